// The JavaScript that runs in every fresh global before the action's code: console, fetch (with Headers and
// Response), setTimeout/clearTimeout that die with the run, TextEncoder/TextDecoder, URL/URLSearchParams and
// crypto. It reaches the engine only through the `__jail` natives it captures and then deletes from the global.
#include "jail/internal/prelude.h"

namespace parley::jail::internal {

const char* const kPrelude = R"js('use strict';
(function (jail) {
  const G = globalThis;
  const define = (obj, name, value) =>
    Object.defineProperty(obj, name, { value, writable: true, configurable: true, enumerable: false });
  // Classes are built on first use: most runs touch none of them, and a fresh global per run pays for each.
  const once = (make) => { let v; return () => (v === undefined ? (v = make()) : v); };
  const lazy = (name, get) => Object.defineProperty(G, name, {
    configurable: true, enumerable: false,
    get() { const v = get(); define(G, name, v); return v; },
    set(v) { define(G, name, v); },
  });

  // --- console: lines go to the run log, never to stdout ------------------------------------------------------
  const show = (v) => {
    if (typeof v === 'string') return v;
    if (v instanceof Error) return String(v) + (v.stack ? '\n' + v.stack : '');
    if (typeof v === 'undefined' || typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint') {
      return String(v);
    }
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v);
    }
  };
  const logger = (prefix) => (...args) => { jail.log(prefix + args.map(show).join(' ')); };
  define(G, 'console', {
    log: logger(''), info: logger('[info] '), debug: logger('[debug] '),
    warn: logger('[warn] '), error: logger('[error] '), trace: logger('[trace] '),
  });

  // --- timers: resolved by the jail thread, gone when the run ends -------------------------------------------
  let timerSeq = 0;
  const liveTimers = new Set();
  define(G, 'setTimeout', (fn, ms, ...args) => {
    if (typeof fn !== 'function') throw new TypeError('setTimeout needs a function');
    const id = ++timerSeq;
    liveTimers.add(id);
    jail.sleep(Math.max(0, Number(ms) || 0)).then(() => { if (liveTimers.delete(id)) fn(...args); });
    return id;
  });
  define(G, 'clearTimeout', (id) => { liveTimers.delete(id); });

  // --- crypto ------------------------------------------------------------------------------------------------
  define(G, 'crypto', {
    randomUUID: () => jail.randomUUID(),
    getRandomValues(view) {
      if (!ArrayBuffer.isView(view) || view instanceof Float32Array || view instanceof Float64Array) {
        throw new TypeError('getRandomValues needs an integer typed array');
      }
      if (view.byteLength > 65536) throw new RangeError('getRandomValues: at most 65536 bytes');
      const hex = jail.randomHex(view.byteLength);
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
      return view;
    },
  });

  // --- TextEncoder / TextDecoder (UTF-8) ---------------------------------------------------------------------
  const textClasses = once(() => {
  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(input = '') {
      const s = String(input);
      const out = [];
      for (let i = 0; i < s.length; i++) {
        let c = s.charCodeAt(i);
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
          const d = s.charCodeAt(i + 1);
          if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
        }
        if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
        if (c < 0x80) out.push(c);
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      }
      return new Uint8Array(out);
    }
  }
  class TextDecoder {
    constructor(label = 'utf-8') {
      const l = String(label).toLowerCase();
      if (l !== 'utf-8' && l !== 'utf8') throw new RangeError('TextDecoder supports utf-8 only');
    }
    get encoding() { return 'utf-8'; }
    decode(input) {
      if (input === undefined) return '';
      const b = input instanceof ArrayBuffer ? new Uint8Array(input)
        : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
      let s = '';
      const push = (cp) => { s += String.fromCodePoint(cp); };
      for (let i = 0; i < b.length;) {
        const c = b[i];
        let n = 0, cp = 0, min = 0;
        if (c < 0x80) { push(c); i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 31; min = 0x80; }
        else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 15; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 7; min = 0x10000; }
        else { push(0xfffd); i++; continue; }
        let j = 1;
        for (; j <= n && i + j < b.length && (b[i + j] & 0xc0) === 0x80; j++) cp = (cp << 6) | (b[i + j] & 63);
        if (j <= n || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) { push(0xfffd); i += Math.max(1, j); continue; }
        push(cp);
        i += n + 1;
      }
      return s;
    }
  }
  return {TextEncoder, TextDecoder};
  });
  lazy('TextEncoder', () => textClasses().TextEncoder);
  lazy('TextDecoder', () => textClasses().TextDecoder);

  // --- URLSearchParams / URL ---------------------------------------------------------------------------------
  const urlClasses = once(() => {
  const formEncode = (s) => encodeURIComponent(s).replace(/%20/g, '+').replace(/[!'()~]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  const formDecode = (s) => { try { return decodeURIComponent(s.replace(/\+/g, ' ')); } catch (e) { return s; } };
  class URLSearchParams {
    #list = [];
    #owner = null;
    constructor(init = '') {
      if (typeof init === 'string') {
        this.#parse(init);
      } else if (init instanceof URLSearchParams) {
        this.#list = init.#list.map((p) => p.slice());
      } else if (init && typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const p = Array.from(pair);
          if (p.length !== 2) throw new TypeError('URLSearchParams: each pair needs two items');
          this.#list.push([String(p[0]), String(p[1])]);
        }
      } else if (init && typeof init === 'object') {
        for (const k of Object.keys(init)) this.#list.push([k, String(init[k])]);
      }
    }
    #parse(text) {
      this.#list = [];
      const s = text.startsWith('?') ? text.slice(1) : text;
      for (const part of s.split('&')) {
        if (!part) continue;
        const eq = part.indexOf('=');
        const k = eq < 0 ? part : part.slice(0, eq);
        const v = eq < 0 ? '' : part.slice(eq + 1);
        this.#list.push([formDecode(k), formDecode(v)]);
      }
    }
    static _attach(params, owner) { params.#owner = owner; }
    static _reset(params, text) { params.#parse(text); }
    #update() { if (this.#owner) this.#owner._setSearchFromParams(this.toString()); }
    get size() { return this.#list.length; }
    append(k, v) { this.#list.push([String(k), String(v)]); this.#update(); }
    delete(k) { k = String(k); this.#list = this.#list.filter((p) => p[0] !== k); this.#update(); }
    get(k) { k = String(k); const p = this.#list.find((q) => q[0] === k); return p ? p[1] : null; }
    getAll(k) { k = String(k); return this.#list.filter((p) => p[0] === k).map((p) => p[1]); }
    has(k) { k = String(k); return this.#list.some((p) => p[0] === k); }
    set(k, v) {
      k = String(k); v = String(v);
      const i = this.#list.findIndex((p) => p[0] === k);
      if (i < 0) { this.#list.push([k, v]); } else {
        this.#list[i][1] = v;
        this.#list = this.#list.filter((p, j) => j <= i || p[0] !== k);
      }
      this.#update();
    }
    sort() { this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); this.#update(); }
    forEach(fn, self) { for (const [k, v] of this.#list) fn.call(self, v, k, this); }
    *entries() { for (const p of this.#list) yield [p[0], p[1]]; }
    *keys() { for (const p of this.#list) yield p[0]; }
    *values() { for (const p of this.#list) yield p[1]; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return this.#list.map(([k, v]) => formEncode(k) + '=' + formEncode(v)).join('&'); }
  }

  const SPECIAL = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443', 'ftp:': '21', 'file:': '' };
  const URL_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*:)(?:\/\/(?:([^:@\/?#]*)(?::([^@\/?#]*))?@)?(\[[0-9a-fA-F:.]*\]|[^:\/?#]*)(?::([0-9]*))?)?([^?#]*)(\?[^#]*)?(#.*)?$/;
  const removeDots = (path) => {
    const out = [];
    const segs = path.split('/');
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s === '..') { if (out.length > 1) out.pop(); if (i === segs.length - 1) out.push(''); }
      else if (s === '.') { if (i === segs.length - 1) out.push(''); }
      else out.push(s);
    }
    const r = out.join('/');
    return r.startsWith('/') ? r : '/' + r;
  };
  const encodePath = (p) => p.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@\/%]/g, (c) => encodeURIComponent(c));
  const encodeQuery = (q) => q.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@\/?%]/g, (c) => encodeURIComponent(c));
  class URL {
    #p = null;
    #params = null;
    constructor(url, base) {
      let text = String(url).trim();
      let m = URL_RE.exec(text);
      if (!m) {
        if (base === undefined) throw new TypeError('Invalid URL: ' + text);
        const b = new URL(base);
        if (text.startsWith('//')) text = b.protocol + text;
        else if (text.startsWith('/')) text = b.origin + text;
        else if (text.startsWith('?')) text = b.origin + b.pathname + text;
        else if (text.startsWith('#')) text = b.origin + b.pathname + b.search + text;
        else if (text === '') text = b.origin + b.pathname + b.search;
        else text = b.origin + b.pathname.replace(/[^/]*$/, '') + text;
        m = URL_RE.exec(text);
        if (!m) throw new TypeError('Invalid URL: ' + String(url));
      }
      const protocol = m[1].toLowerCase();
      const special = Object.prototype.hasOwnProperty.call(SPECIAL, protocol);
      const host = (m[4] || '').toLowerCase();
      if (special && protocol !== 'file:' && !host) throw new TypeError('Invalid URL: ' + text);
      if (/[\s<>^|%]/.test(host) && !host.startsWith('[')) throw new TypeError('Invalid URL host: ' + text);
      let port = m[5] || '';
      if (port && Number(port) > 65535) throw new TypeError('Invalid URL port: ' + text);
      if (port !== '') port = String(Number(port));
      if (special && SPECIAL[protocol] === port) port = '';
      let path = m[6] || '';
      if (special || m[4] !== undefined) path = removeDots(path || '/');
      this.#p = {
        protocol, username: m[2] || '', password: m[3] || '', hostname: host, port,
        pathname: encodePath(path), search: m[7] && m[7].length > 1 ? encodeQuery(m[7]) : '',
        hash: m[8] && m[8].length > 1 ? '#' + encodePath(m[8].slice(1)) : '', opaque: m[4] === undefined,
      };
    }
    get protocol() { return this.#p.protocol; }
    get username() { return this.#p.username; }
    get password() { return this.#p.password; }
    get hostname() { return this.#p.hostname; }
    set hostname(v) { this.#p.hostname = String(v).toLowerCase(); }
    get port() { return this.#p.port; }
    set port(v) { this.#p.port = v === '' ? '' : String(Number(v)); }
    get host() { return this.#p.hostname + (this.#p.port ? ':' + this.#p.port : ''); }
    get origin() { return this.#p.opaque ? 'null' : this.#p.protocol + '//' + this.host; }
    get pathname() { return this.#p.pathname; }
    set pathname(v) { this.#p.pathname = encodePath(removeDots(String(v))); }
    get search() { return this.#p.search; }
    set search(v) {
      const s = String(v);
      this.#p.search = s === '' || s === '?' ? '' : encodeQuery(s.startsWith('?') ? s : '?' + s);
      if (this.#params) URLSearchParams._reset(this.#params, this.#p.search);
    }
    _setSearchFromParams(text) { this.#p.search = text ? '?' + text : ''; }
    get searchParams() {
      if (!this.#params) {
        this.#params = new URLSearchParams(this.#p.search);
        URLSearchParams._attach(this.#params, this);
      }
      return this.#params;
    }
    get hash() { return this.#p.hash; }
    set hash(v) { const s = String(v); this.#p.hash = s === '' || s === '#' ? '' : '#' + encodePath(s.startsWith('#') ? s.slice(1) : s); }
    get href() {
      const p = this.#p;
      if (p.opaque) return p.protocol + p.pathname + p.search + p.hash;
      const auth = p.username ? p.username + (p.password ? ':' + p.password : '') + '@' : '';
      return p.protocol + '//' + auth + this.host + p.pathname + p.search + p.hash;
    }
    toString() { return this.href; }
    toJSON() { return this.href; }
    static canParse(url, base) { try { new URL(url, base); return true; } catch (e) { return false; } }
  }
  return {URL, URLSearchParams};
  });
  lazy('URL', () => urlClasses().URL);
  lazy('URLSearchParams', () => urlClasses().URLSearchParams);

  // --- fetch -------------------------------------------------------------------------------------------------
  const httpClasses = once(() => {
  class Headers {
    #map = new Map();
    constructor(init) {
      if (init instanceof Headers) init.forEach((v, k) => this.append(k, v));
      else if (Array.isArray(init)) for (const [k, v] of init) this.append(k, v);
      else if (init && typeof init === 'object') for (const k of Object.keys(init)) this.append(k, init[k]);
    }
    append(k, v) {
      k = String(k).toLowerCase(); v = String(v);
      this.#map.set(k, this.#map.has(k) ? this.#map.get(k) + ', ' + v : v);
    }
    set(k, v) { this.#map.set(String(k).toLowerCase(), String(v)); }
    get(k) { const v = this.#map.get(String(k).toLowerCase()); return v === undefined ? null : v; }
    has(k) { return this.#map.has(String(k).toLowerCase()); }
    delete(k) { this.#map.delete(String(k).toLowerCase()); }
    forEach(fn, self) { for (const [k, v] of this.#map) fn.call(self, v, k, this); }
    *entries() { yield* this.#map.entries(); }
    *keys() { yield* this.#map.keys(); }
    *values() { yield* this.#map.values(); }
    [Symbol.iterator]() { return this.entries(); }
  }
  class Response {
    #body;
    #used = false;
    constructor(raw) {
      this.status = raw.status;
      this.ok = raw.status >= 200 && raw.status < 300;
      this.statusText = '';
      this.url = raw.url;
      this.redirected = false;
      this.headers = new Headers(raw.headers);
      this.#body = raw.body;
    }
    get bodyUsed() { return this.#used; }
    #take() {
      if (this.#used) return Promise.reject(new TypeError('body already used'));
      this.#used = true;
      return Promise.resolve(this.#body);
    }
    text() { return this.#take(); }
    json() { return this.#take().then((t) => JSON.parse(t)); }
    arrayBuffer() { return this.#take().then((t) => new (textClasses().TextEncoder)().encode(t).buffer); }
  }
  return {Headers, Response};
  });
  lazy('Headers', () => httpClasses().Headers);
  lazy('Response', () => httpClasses().Response);
  define(G, 'fetch', async (input, init = {}) => {
    const { Headers, Response } = httpClasses();
    const { URL, URLSearchParams } = urlClasses();
    const { TextDecoder } = textClasses();
    const url = input instanceof URL ? input.href : String(input);
    const method = String(init.method || 'GET').toUpperCase();
    const headers = [];
    new Headers(init.headers).forEach((v, k) => headers.push([k, v]));
    let body = init.body;
    if (body === undefined || body === null) body = undefined;
    else if (body instanceof URLSearchParams) {
      body = body.toString();
      if (!headers.some((h) => h[0] === 'content-type')) {
        headers.push(['content-type', 'application/x-www-form-urlencoded;charset=UTF-8']);
      }
    } else if (ArrayBuffer.isView(body) || body instanceof ArrayBuffer) body = new TextDecoder().decode(body);
    else if (typeof body !== 'string') throw new TypeError('fetch: body must be a string, URLSearchParams or bytes');
    const raw = await jail.fetch(url, method, headers, body);
    return new Response(raw);
  });
})(globalThis.__jail);
delete globalThis.__jail;
)js";

}  // namespace parley::jail::internal
