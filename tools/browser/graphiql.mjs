// The gateway's GraphiQL in headless Chromium: opens the page, types a query into the editor,
// formats and runs it, waits for the result pane to show the data, and writes a screenshot.
//
//   node tools/browser/graphiql.mjs URL PNG [QUERY]
//
// URL is the page (`http://127.0.0.1:4000/graphql`); QUERY one line with balanced braces
// (default `{ regions { name shards partitions } }`: the shard map answers it, so no service
// but the gateway need run). Fails (exit 1) when the page asks for anything its origin does not
// serve (refused and listed: a page that needs the internet fails here, not on a machine
// without it), on a script error or a Content-Security-Policy violation, on an answer of 400 or
// more, or when no result comes. On success prints the result pane's text (the JSON answer) on
// stdout, for the caller to check.
//
// Chromium is the machine's (`/usr/bin/chromium`, or $CHROMIUM), driven by playwright-core
// (tools/browser/package-lock.json); `npx playwright install` is not needed. gateway/tests
// runs this (`graphiql_runs_a_query_in_chromium`); `./dev graphiql` installs what it needs.

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const TIMEOUT_MS = 30_000;
// Besides playwright's own: no first-run, sync or component-update traffic, which floods a
// machine without internet with refused connections.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const [url, png, query = '{ regions { name shards partitions } }'] = process.argv.slice(2);
if (!url || !png) {
  console.error('usage: node tools/browser/graphiql.mjs URL PNG [QUERY]');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) {
  console.error(`no Chromium at ${executablePath} (set CHROMIUM, or ./dev graphiql installs the Debian package)`);
  process.exit(2);
}

const origin = new URL(url).origin;
const problems = [];
const userDataDir = await mkdtemp(join(tmpdir(), 'ticket-hub-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1280, height: 720 },
  deviceScaleFactor: 1,
  colorScheme: 'light',
  timeout: TIMEOUT_MS,
});
let result;
try {
  result = await run(context);
} catch (e) {
  problems.push(String(e && e.message ? e.message : e));
} finally {
  await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}
if (problems.length > 0) {
  console.error(`GraphiQL at ${url}:\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
process.stdout.write(`${result}\n`);

async function run(context) {
  // Anything not from the gateway is refused and counted: the page must need nothing else.
  await context.route('**/*', (route) => {
    const target = route.request().url();
    if (target.startsWith('data:') || new URL(target).origin === origin) return route.continue();
    problems.push(`asked for ${target}, which is not served by ${origin}`);
    return route.abort('blockedbyclient');
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${r.request().method()} ${r.url()} answered ${r.status()}`);
  });
  page.setDefaultTimeout(TIMEOUT_MS);

  await page.goto(url, { waitUntil: 'load' });
  const editor = page.locator('.graphiql-query-editor .CodeMirror');
  await editor.waitFor();
  // Typed as a person would: the editor closes brackets itself and types over the closing
  // ones, so the text comes out as typed; checked below.
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(query, { delay: 10 });
  await page.keyboard.press('Escape'); // closes the completion list, if open
  const typed = await editor.evaluate((el) => el.CodeMirror.getValue());
  if (typed.trim() !== query) throw new Error(`the editor holds ${JSON.stringify(typed)}, not the query typed`);

  await page.getByRole('button', { name: 'Prettify query (Shift-Ctrl-P)' }).click();
  await page.locator('.graphiql-execute-button').click();
  // The pane is empty until the answer is in; then it shows it, data or errors.
  const handle = await page.waitForFunction(
    () => {
      const el = document.querySelector('.graphiql-response .CodeMirror');
      const text = el && el.CodeMirror ? el.CodeMirror.getValue() : '';
      return text.trim() !== '' && text;
    },
    null,
    { timeout: TIMEOUT_MS },
  );
  const text = await handle.jsonValue();
  // The schema GraphiQL introspected on load (for completion and the Docs panel): the panel
  // opened shows the root query type.
  await page.locator('button[aria-label="Show Documentation Explorer"]').click();
  await page.locator('.graphiql-doc-explorer').getByText('Query', { exact: true }).first().waitFor();
  await page.screenshot({ path: png });
  return text;
}
