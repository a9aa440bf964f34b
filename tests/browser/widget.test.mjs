// The website widget in a real browser (Debian's chromium driven by playwright-core): a shop page on another
// origin embeds /widget.js, the visitor chats with the demo bot (examples/demo-bot.json), presses buttons, passes
// parameters from the page into the scenario, uploads a file, survives a single-page-app re-render of <body> and a
// reload with the whole history back exactly once. Also: the page's hostile CSS does not reach the widget, a page
// on a domain that is not allowed gets no widget, and widget.js stays under 30 KB gzipped.
//
//   node widget.test.mjs --chromium /usr/bin/chromium --server BIN --bot demo-bot.json   (tests/browser/widget_server)
//   node widget.test.mjs --chromium /usr/bin/chromium --parley BIN                       (parley serve --demo)
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

const MAX_GZIP_BYTES = 30 * 1024;
const TIMEOUT = 15000;
let failures = 0;
let step = 0;
function check(condition, what) {
    step += 1;
    if (condition) {
        console.log(`ok ${step} - ${what}`);
    } else {
        failures += 1;
        console.log(`not ok ${step} - ${what}`);
    }
}

// --- the Parley side -------------------------------------------------------------------------------------------
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'parley-browser-'));
let backend;

function waitForLine(child, pattern, ms) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${pattern} within ${ms} ms`)), ms);
        const seen = [];
        for (const stream of [child.stdout, child.stderr]) {
            readline.createInterface({ input: stream }).on('line', (line) => {
                seen.push(line);
                const m = line.match(pattern);
                if (m) {
                    clearTimeout(timer);
                    resolve(m);
                }
            });
        }
        child.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`the server exited (${code}):\n${seen.slice(-20).join('\n')}`));
        });
    });
}

async function api(base, method, url, body, token) {
    const res = await fetch(base + url, {
        method,
        headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
}

async function startBackend() {
    if (args.server) {
        backend = spawn(args.server, ['--bot', args.bot, '--data', dataDir, '--allowed-domain', '127.0.0.1'],
                        { stdio: ['ignore', 'pipe', 'pipe'] });
        const [line] = await waitForLine(backend, /^\{"url".*\}$/, 20000);
        return JSON.parse(line);
    }
    if (args.parley) {
        const env = { ...process.env, PARLEY_ADMIN_EMAIL: 'admin@example.com', PARLEY_ADMIN_PASSWORD: 'browser-test-1' };
        backend = spawn(args.parley, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--demo'],
                        { stdio: ['ignore', 'pipe', 'pipe'], env });
        const m = await waitForLine(backend, /"event":"server_started".*"port":(\d+)/, 30000);
        const url = `http://127.0.0.1:${m[1]}`;
        const script = await fetch(`${url}/widget.js`);
        if (script.status !== 200) {
            throw new Error('this parley binary does not serve /widget.js: wire the widget in (src/widget/README.md)');
        }
        const { token } = await api(url, 'POST', '/api/v1/auth/login',
                                    { email: env.PARLEY_ADMIN_EMAIL, password: env.PARLEY_ADMIN_PASSWORD });
        const bots = await api(url, 'GET', '/api/v1/bots', null, token);
        const bot = bots.items[0].id;
        const created = await api(url, 'POST', `/api/v1/bots/${bot}/channels`, { kind: 'widget', credentials: {} }, token);
        await api(url, 'PUT', `/api/v1/bots/${bot}/channels/${created.id}/widget`,
                  { title: 'Demo shop', allowed_domains: ['127.0.0.1'] }, token);
        return { url, channel: created.id };
    }
    throw new Error('pass --server BIN --bot FILE, or --parley BIN');
}

// --- the shop's page (another origin: another port) -------------------------------------------------------------
function shopPage(parley, channel) {
    return `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<style>
  * { color: red !important; font-size: 40px !important; font-family: serif !important; }
  button { display: none !important; }
  div { border: 5px solid lime !important; }
</style>
<script>
  window.__events = [];
  window.Parley = window.Parley || function () { (Parley.q = Parley.q || []).push(arguments); };
  Parley('on', 'message', function (m) { window.__events.push(['message', m.from, m.text]); });
  Parley('on', 'error', function (e) { window.__events.push(['error', e.code]); });
  Parley('on', 'ready', function () { window.__events.push(['ready']); });
  Parley('setParams', { page: location.pathname });
</script>
</head><body><h1>Shop</h1><p>Products…</p>
<script src="${parley}/widget.js" data-channel="${channel}" async></script>
</body></html>`;
}

function startPageServer(parley, channel) {
    return new Promise((resolve) => {
        const server = http.createServer((req, res) => {
            res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
            res.end(shopPage(parley, channel));
        });
        server.listen(0, '127.0.0.1', () => resolve(server));
    });
}

// --- helpers over the widget's (test-opened) shadow root ------------------------------------------------------------
async function texts(page) {
    return page.locator('parley-widget .log .msg[data-n]').allTextContents();
}
async function waitText(page, text) {
    await page.locator('parley-widget .log .msg[data-n]', { hasText: text }).first().waitFor({ timeout: TIMEOUT });
}

async function main() {
    const { url: parley, channel } = await startBackend();
    const pages = await startPageServer(parley, channel);
    const shop = `http://127.0.0.1:${pages.address().port}/`;

    const script = Buffer.from(await (await fetch(`${parley}/widget.js`)).arrayBuffer());
    const gzipped = zlib.gzipSync(script, { level: 9 }).length;
    check(gzipped < MAX_GZIP_BYTES, `widget.js is ${gzipped} bytes gzipped (${script.length} raw), under ${MAX_GZIP_BYTES}`);

    const browser = await chromium.launch({ executablePath: args.chromium, args: ['--no-sandbox'] });
    try {
        const context = await browser.newContext({ locale: 'en-US' });
        // The widget uses a closed shadow root; the test opens it to look inside (the product code is unchanged).
        await context.addInitScript(() => {
            const attach = Element.prototype.attachShadow;
            Element.prototype.attachShadow = function (init) { return attach.call(this, { ...init, mode: 'open' }); };
        });
        const page = await context.newPage();
        page.on('pageerror', (e) => check(false, `no script error on the page: ${e.message}`));
        await page.goto(shop);

        const launcher = page.locator('parley-widget .launcher');
        await launcher.waitFor({ timeout: TIMEOUT });
        const look = await launcher.evaluate((el) => {
            const s = getComputedStyle(el);
            return { display: s.display, background: s.backgroundColor };
        });
        check(look.display === 'flex' && look.background === 'rgb(37, 99, 235)',
              `the page's CSS does not reach the launcher (${JSON.stringify(look)})`);

        await launcher.click();
        await waitText(page, 'Please send your phone number');
        check(true, 'opening the chat runs the bot\'s start node (in the browser\'s language)');
        const bubbleFont = await page.locator('parley-widget .msg.bot').first()
            .evaluate((el) => [getComputedStyle(el).fontSize, getComputedStyle(el).color]);
        check(bubbleFont[0] === '14px' && bubbleFont[1] !== 'rgb(255, 0, 0)',
              `the page's CSS does not reach the messages (${bubbleFont})`);

        const input = page.locator('parley-widget textarea');
        await input.fill('+380501112233');
        await input.press('Enter');
        await waitText(page, 'registered with +380501112233');
        await waitText(page, 'How can we help?');
        check(true, 'a typed message gets the bot\'s answer');

        await page.locator('parley-widget .buttons button', { hasText: 'FAQ' }).click();
        await waitText(page, 'Choose a topic:');
        check(true, 'pressing a button moves the scenario');

        await page.evaluate(() => window.Parley.setParams({ order_id: 'A-7' }, 'order_status'));
        await waitText(page, 'Your order #A-7 is on its way.');
        check(true, 'Parley.setParams(..., alias) passes page parameters into the scenario');

        // A single-page app re-renders <body>: the widget comes back with its state.
        await page.evaluate(() => { document.body.innerHTML = '<h1>Checkout</h1>'; history.pushState({}, '', '/checkout'); });
        await launcher.waitFor({ timeout: TIMEOUT });
        check((await texts(page)).some((t) => t.includes('Choose a topic:')), 'the widget survives a re-render of <body>');

        await page.locator('parley-widget input[type=file]').setInputFiles({
            name: 'pixel.png', mimeType: 'image/png',
            buffer: Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex'),
        });
        await waitText(page, '[file] pixel.png');
        const link = await page.locator('parley-widget .msg.client a').last().getAttribute('href');
        const file = await fetch(link);
        check(file.status === 200 && file.headers.get('content-type') === 'image/png',
              'an uploaded file becomes a message with a working link');

        const before = await texts(page);
        const events = await page.evaluate(() => window.__events);
        check(events.some((e) => e[0] === 'ready') && events.some((e) => e[0] === 'message' && e[1] === 'bot'),
              'events queued before the script loaded were registered (ready, message)');

        // Reload: the history is back, in order, each message once.
        await page.reload();
        await page.locator('parley-widget .panel').waitFor({ state: 'visible', timeout: TIMEOUT });
        await waitText(page, '[file] pixel.png');
        const after = await texts(page);
        check(JSON.stringify(after) === JSON.stringify(before),
              `after a reload the history is the same ${before.length} messages`);
        const numbers = await page.locator('parley-widget .log .msg[data-n]')
            .evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-n'))));
        check(new Set(numbers).size === numbers.length && numbers.every((n, i) => i === 0 || n > numbers[i - 1]),
              'no message is shown twice, and they are in order');

        await input.fill('Back');
        await input.press('Enter');
        await waitText(page, 'How can we help?');
        check((await texts(page)).filter((t) => t === 'How can we help?').length === 2,
              'the conversation goes on after the reload');

        await page.evaluate(() => window.Parley.close());
        check(await page.locator('parley-widget .panel').isHidden(), 'Parley.close() closes the chat');
        await page.evaluate(() => window.Parley.open());
        check(await page.locator('parley-widget .panel').isVisible(), 'Parley.open() opens it');

        // A page on a domain the widget is not allowed on gets no widget, and learns why.
        const other = await context.newPage();
        await other.goto(shop.replace('127.0.0.1', 'localhost'));
        await other.waitForFunction(() => window.__events.some((e) => e[0] === 'error'), null, { timeout: TIMEOUT });
        const refused = await other.evaluate(() => window.__events.filter((e) => e[0] === 'error').map((e) => e[1]));
        check(refused.includes('origin_not_allowed') && (await other.locator('parley-widget').count()) === 0,
              `a page outside allowed_domains gets no widget (${refused})`);
    } finally {
        await browser.close();
        pages.close();
    }
}

main()
    .catch((e) => {
        failures += 1;
        console.log(`not ok - ${e.stack || e}`);
    })
    .finally(() => {
        if (backend) backend.kill('SIGTERM');
        rmSync(dataDir, { recursive: true, force: true });
        console.log(failures ? `FAILED: ${failures} check(s)` : `PASSED: ${step} checks`);
        process.exit(failures ? 1 : 0);
    });
