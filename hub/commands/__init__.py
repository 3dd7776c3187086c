"""The `gridhub` subcommands beyond serving: identity, audit, policy tools."""
