"""GridHub: the information-sharing hub for community grid governance."""
