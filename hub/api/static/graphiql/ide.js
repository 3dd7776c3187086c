// Boots GraphiQL (vendored UMD build: globals React, ReactDOM, GraphiQL) against this GridHub:
// queries and mutations over HTTP at /graphql, subscriptions over WebSocket at ws(s)://<host>/graphql
// (graphql-transport-ws, through the graphql-ws client bundled in GraphiQL). Nothing is loaded
// from another host.
(function () {
  "use strict";

  const DEFAULT_QUERY = `# GridHub GraphQL IDE
#
# Ctrl-Enter runs the operation; the Docs button (top left) browses the schema.
# Without a token you are the public role and see its schema. For another role, run
# \`gridhub token dispatcher\` and put it in the Headers tab below:
#   {"Authorization": "Bearer <token>", "X-GridHub-Purpose": "why you read personal data"}
# Subscriptions (eventChanged) run over WebSocket on the same URL.

query FirstLook {
  me {
    role
  }
  notices(first: 5) {
    totalCount
    edges {
      node {
        title
        publishedAt
        department {
          name
        }
      }
    }
  }
}
`;

  const endpoint = new URL("/graphql", window.location.href);
  const subscriptionEndpoint = new URL(endpoint.href);
  subscriptionEndpoint.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  const fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: subscriptionEndpoint.href,
  });

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
