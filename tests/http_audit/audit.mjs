// Runs graphql-http's GraphQL-over-HTTP server audit against a live endpoint and prints
// `{ results, fetches }` as one JSON object on stdout, for tests/test_graphql_over_http.py to
// judge: the audit's results, and how many requests it sent.
//
// GRIDHUB_TEST_HEADERS (a JSON object, optional) holds headers added to every request the audit
// sends (credentials and a purpose); the audit's own headers are kept.
//
// Usage: node tests/http_audit/audit.mjs http://127.0.0.1:PORT/graphql
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql-url>');
  process.exit(2);
}

// A failing audit keeps the Response it judged; its body is often consumed already, so read
// what can still be read and never let that hide the verdict.
async function describe(response) {
  if (!response) return null;
  let body = null;
  try {
    body = (await response.clone().text()).slice(0, 500);
  } catch {
    body = null;
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  };
}

const extra = JSON.parse(process.env.GRIDHUB_TEST_HEADERS || '{}');
let fetches = 0;
async function fetchWithHeaders(input, init = {}) {
  fetches += 1;
  const headers = new Headers(init.headers);
  for (const [name, value] of Object.entries(extra)) headers.set(name, value);
  return fetch(input, { ...init, headers });
}

const results = await auditServer({ url, fetchFn: fetchWithHeaders });
const report = [];
for (const result of results) {
  report.push({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.status === 'ok' ? null : result.reason,
    response: result.status === 'ok' ? null : await describe(result.response),
  });
}
process.stdout.write(JSON.stringify({ results: report, fetches }) + '\n');
