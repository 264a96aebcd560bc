// Starts GraphiQL against the address this page was served from: the gateway answers GET
// /graphql with this page and POST /graphql with results. A file rather than an inline
// script, so the page's Content-Security-Policy can allow this origin's scripts only.
(function () {
  'use strict';
  var endpoint = new URL(window.location.pathname, window.location.origin).toString();
  var defaultQuery = [
    '# Ticket Hub gateway. Ctrl-Enter runs the operation; the schema is in the Docs panel.',
    '# Signed-in fields need a token from `login`: in Headers,',
    '#   {"Authorization": "Bearer <accessToken>"}',
    '{',
    '  regions {',
    '    name',
    '    shards',
    '    partitions',
    '  }',
    '}',
    '',
  ].join('\n');
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url: endpoint }),
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
