// Boots GridHub's GraphiQL page in jsdom against a live server and uses it as a person would:
// the page loads, GraphiQL renders its editors and introspects, the Run button executes the
// default query, and a subscription typed into the editor receives an event that a mutation
// reports. Every request the page makes is recorded; one to another origin is refused (as on an
// offline intranet) and reported. Prints one JSON object on stdout.
//
// jsdom has no layout: CodeMirror 5 asks Range for client rects, so those get empty stubs.
// jsdom has no fetch either: the page gets Node's, with every call recorded.
//
// GRIDHUB_TEST_HEADERS (a JSON object, optional) holds headers sent with every request to the
// server, the WebSocket upgrade included, as a browser behind an authenticating proxy would
// (a page's own WebSocket cannot set headers): credentials and a purpose.
//
// Usage: node tests/http_audit/ide_boot.mjs http://127.0.0.1:PORT/graphql GRID_CODE
import jsdom from 'jsdom';

const { JSDOM, VirtualConsole, requestInterceptor } = jsdom;
const [pageUrl, gridCode] = process.argv.slice(2);
if (!pageUrl || !gridCode) {
  console.error('usage: node ide_boot.mjs <graphql-url> <grid-code>');
  process.exit(2);
}
const origin = new URL(pageUrl).origin;
const extraHeaders = JSON.parse(process.env.GRIDHUB_TEST_HEADERS || '{}');
const report = {
  loaded: [], // subresources jsdom fetched for the page (scripts, stylesheets, ...)
  fetched: [], // the page's fetch() calls
  answers: [], // { url, status, errors } of each
  sockets: [], // WebSockets the page opened: { url, protocols }
  foreign: [], // any of the above aimed at another origin (refused)
  errors: [],
  queryResult: null,
  subscriptionResult: null,
};
const note = (kind) => (error) =>
  report.errors.push(`${kind}: ${String(error?.stack || error).slice(0, 500)}`);
process.on('uncaughtException', note('uncaught'));
process.on('unhandledRejection', note('unhandled rejection'));
const virtualConsole = new VirtualConsole();
virtualConsole.on('jsdomError', note('jsdom'));
virtualConsole.on('error', (...args) => note('console.error')(args.map(String).join(' ')));

const sameOrigin = (url) => new URL(url).origin === origin;
const sameHost = (url) => new URL(url).host === new URL(origin).host;

// undici passes request headers as an object, a flat [name, value, ...] array or an iterable of
// pairs: the result is an object with the extra headers set.
function withExtraHeaders(headers) {
  const merged = {};
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) merged[String(headers[i])] = headers[i + 1];
  } else if (headers && typeof headers[Symbol.iterator] === 'function') {
    for (const [name, value] of headers) merged[name] = value;
  } else {
    Object.assign(merged, headers);
  }
  for (const [name, value] of Object.entries(extraHeaders)) {
    for (const key of Object.keys(merged)) {
      if (key.toLowerCase() === name.toLowerCase()) delete merged[key];
    }
    merged[name] = value;
  }
  return merged;
}

// An undici interceptor: jsdom's page loads and WebSocket upgrades to the server get the headers.
const addHeaders = (dispatch) => (options, handler) => {
  const url = options.opaque?.url || options.origin + options.path;
  if (!sameHost(url)) return dispatch(options, handler);
  return dispatch({ ...options, headers: withExtraHeaders(options.headers) }, handler);
};

const headersFor = (init) => {
  const headers = new Headers(init?.headers);
  for (const [name, value] of Object.entries(extraHeaders)) headers.set(name, value);
  return headers;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(what, predicate, timeout = 15000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    try {
      if (predicate()) return;
    } catch {
      // not rendered yet
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function finish(code) {
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(code);
}

try {
  const dom = await JSDOM.fromURL(pageUrl, {
    runScripts: 'dangerously',
    pretendToBeVisual: true,
    virtualConsole,
    resources: {
      interceptors: [
        requestInterceptor((request) => {
          report.loaded.push(request.url);
          if (!sameOrigin(request.url)) {
            report.foreign.push(request.url);
            return new Response('', { status: 599 });
          }
          return undefined;
        }),
        addHeaders,
      ],
    },
    beforeParse(window) {
      const rect = { left: 0, right: 0, top: 0, bottom: 0, width: 0, height: 0, x: 0, y: 0 };
      window.Range.prototype.getBoundingClientRect = () => rect;
      window.Range.prototype.getClientRects = () => ({
        length: 0,
        item: () => null,
        [Symbol.iterator]: [][Symbol.iterator],
      });
      window.fetch = async (input, init) => {
        const url = new URL(String(input?.url ?? input), window.location.href).href;
        report.fetched.push(url);
        if (!sameOrigin(url)) {
          report.foreign.push(url);
          throw new TypeError('refused: another origin');
        }
        const response = await fetch(url, { ...init, headers: headersFor(init) });
        // What the IDE got back: introspection that a limit refuses would leave it schema-less.
        const body = await response.clone().json().catch(() => null);
        report.answers.push({ url, status: response.status, errors: body?.errors ?? null });
        return response;
      };
      const NativeWebSocket = window.WebSocket;
      window.WebSocket = class extends NativeWebSocket {
        constructor(url, protocols) {
          const absolute = new URL(String(url), window.location.href);
          report.sockets.push({ url: absolute.href, protocols });
          if (absolute.host !== new URL(origin).host) report.foreign.push(absolute.href);
          super(url, protocols);
        }
      };
    },
  });
  const doc = dom.window.document;
  const editor = (selector) => doc.querySelector(`${selector} .CodeMirror`).CodeMirror;
  const result = () => editor('.result-window').getValue();
  const run = () => doc.querySelector('.graphiql-execute-button').click();

  await until('GraphiQL to render its editors', () =>
    editor('.graphiql-query-editor') && editor('.result-window'),
  );
  await until('the introspection request', () => report.fetched.length > 0);
  // The schema is in once the docs explorer can be opened without a spinner; simpler and as
  // good: run the default query and wait for its data.
  await sleep(300);
  run();
  await until('the default query result', () => JSON.parse(result()).data);
  report.queryResult = JSON.parse(result());

  editor('.graphiql-query-editor').setValue(
    'subscription { eventChanged { action event { title grid { code } } } }',
  );
  await sleep(200);
  run();
  await until('the subscription socket', () => report.sockets.length > 0);
  // graphql-ws sends `subscribe` right after the server's connection_ack; give it that moment.
  await sleep(1000);
  const title = `IDE boot ${Date.now()}`;
  const mutation = await fetch(`${origin}/graphql`, {
    method: 'POST',
    headers: headersFor({ headers: { 'content-type': 'application/json' } }),
    body: JSON.stringify({
      query: `mutation($g: String!, $t: String!) { reportEvent(input: {category: SANITATION, title: $t, gridCode: $g, reporterSystem: "ide-boot"}) { id } }`,
      variables: { g: gridCode, t: title },
    }),
  });
  const reported = await mutation.json();
  if (reported.errors) throw new Error(`reportEvent failed: ${JSON.stringify(reported.errors)}`);
  await until('the subscription result', () => result().includes(title));
  report.subscriptionResult = JSON.parse(result());
  report.subscriptionTitle = title;
  dom.window.close();
  finish(0);
} catch (error) {
  note('boot')(error);
  finish(1);
}
