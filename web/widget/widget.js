/*! Parley website widget — plain JavaScript, no dependencies, served by Parley at /widget.js.
 *
 * Embed once per page (any place in the HTML; the script is safe to load twice and on single-page sites):
 *   <script src="https://PARLEY_HOST/widget.js" data-channel="CHANNEL_ID" async></script>
 * Calls made before the script has loaded are queued when the page defines the stub first:
 *   <script>window.Parley=window.Parley||function(){(Parley.q=Parley.q||[]).push(arguments)};</script>
 *
 * JavaScript API (window.Parley; also callable as Parley('open'), Parley('identify', {...})):
 *   open() close() toggle() isOpen()
 *   identify({name, email, phone, external_id, language})  fills the visitor's client card
 *   setParams({key: value, ...}, alias?)  parameters for the scenario ({{client.site_params.key}}); with an entry
 *                                         alias, that section runs with the parameters in its state
 *   send(text)  sends a message as the visitor     startDialog()  runs the bot's start node now
 *   on(event, fn) / off(event, fn)  events: ready, open, close, message, unread, error, connection
 *   destroy()  removes the widget (single-page sites leaving a layout); a later script load brings it back
 * Settings may also come from window.ParleySettings = {channel, server, open} set before the script.
 *
 * Transport: one WebSocket per tab (/widget/{channel}/ws), resumed after a drop with the last message number
 * seen; frames not yet acknowledged are kept (also across reloads, in localStorage) and sent again with the same
 * id, which the server uses as the idempotency key, so a message is neither lost nor handled twice.
 * Isolation: everything lives in a closed shadow root under one element; the page's CSS cannot reach in and the
 * widget's CSS cannot leak out; key events typed into the widget do not bubble to the page's handlers.
 */
(function (win, doc) {
    'use strict';

    var existing = win.Parley;
    if (existing && existing.__parley) return; // loaded twice (SPA re-render, duplicate tag): keep the first

    // Captured now, so a page that later replaces these globals does not break the widget.
    var NativeWebSocket = win.WebSocket;
    var nativeFetch = win.fetch ? win.fetch.bind(win) : null;
    var JSONparse = JSON.parse;
    var JSONstringify = JSON.stringify;
    var setT = win.setTimeout.bind(win);
    var clearT = win.clearTimeout.bind(win);

    var script = doc.currentScript || (function () {
        var list = doc.querySelectorAll('script[src*="widget.js"]');
        return list.length ? list[list.length - 1] : null;
    })();
    var preset = win.ParleySettings || {};
    var channel = preset.channel || (script && script.getAttribute('data-channel')) || '';
    var server = preset.server || (script && script.src ? new URL(script.src, doc.baseURI).origin : '');
    var queued = existing && existing.q ? Array.prototype.slice.call(existing.q) : [];

    var STRINGS = {
        en: {
            connecting: 'Connecting…', offline: 'No connection. Reconnecting…', send: 'Send', attach: 'Attach a file',
            close: 'Close', open: 'Open chat', failed: 'Not sent', retry: 'Tap to retry', uploading: 'Uploading',
            tooBig: 'The file is too large', unavailable: 'The chat is unavailable'
        },
        uk: {
            connecting: 'З’єднання…', offline: 'Немає з’єднання. Пробуємо знову…', send: 'Надіслати',
            attach: 'Додати файл', close: 'Закрити', open: 'Відкрити чат', failed: 'Не надіслано',
            retry: 'Натисніть, щоб повторити', uploading: 'Завантаження', tooBig: 'Файл завеликий',
            unavailable: 'Чат недоступний'
        }
    };
    var FATAL = { channel_not_found: 1, origin_not_allowed: 1, unavailable: 0, too_many_sockets: 1 };
    var PING_MS = 25000;
    var DEAD_MS = 65000;

    // --- storage (localStorage may be missing or throw: private modes, sandboxed frames) ---------------------
    var storeKey = 'parley.widget.' + channel + '@' + server;
    var memory = {};
    function load() {
        try {
            var text = win.localStorage.getItem(storeKey);
            return text ? JSONparse(text) : {};
        } catch (e) {
            return memory;
        }
    }
    function save(state) {
        memory = state;
        try { win.localStorage.setItem(storeKey, JSONstringify(state)); } catch (e) { /* memory only */ }
    }
    function sessionFlag(name, value) {
        try {
            if (value === undefined) return win.sessionStorage.getItem(storeKey + '.' + name) === '1';
            win.sessionStorage.setItem(storeKey + '.' + name, value ? '1' : '0');
        } catch (e) { /* ignore */ }
        return false;
    }

    // --- state -------------------------------------------------------------------------------------------------
    var persisted = load();
    var token = persisted.token || '';
    var outbox = Array.isArray(persisted.outbox) ? persisted.outbox : []; // frames awaiting an ack, in order
    var config = null;
    var lang = ((navigator.language || 'en').split('-')[0] || 'en').toLowerCase();
    var t = STRINGS[lang] || STRINGS.en;
    var messages = []; // {n, from, text, buttons, id, created_at, pending, failed}
    var lastN = 0;
    var seenSent = 0;
    var seenN = persisted.seen | 0; // highest message number shown to the visitor (unread counts what is newer)
    var started = false;
    var ready = false;
    var ws = null;
    var attempt = 0;
    var reconnectTimer = null;
    var pingTimer = null;
    var lastFrameAt = 0;
    var fatal = null;
    var destroyed = false;
    var isOpen = false;
    var unread = 0;
    var lastTypingAt = 0;
    var counter = 0;
    var listeners = {};
    var ui = null;

    function emit(name, data) {
        (listeners[name] || []).slice().forEach(function (fn) {
            try { fn(data); } catch (e) { if (win.console) win.console.error(e); }
        });
    }
    function newId() {
        counter += 1;
        return 'w' + Date.now().toString(36) + Math.random().toString(36).slice(2, 8) + counter.toString(36);
    }
    function persist() { save({ token: token, outbox: outbox, seen: seenN }); }

    // --- transport ---------------------------------------------------------------------------------------------
    function wsUrl() {
        var u = new URL('/widget/' + encodeURIComponent(channel) + '/ws', server);
        u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
        if (token) u.searchParams.set('token', token);
        if (lastN) u.searchParams.set('since', String(lastN));
        if (/^[a-z]{2,3}$/.test(lang)) u.searchParams.set('lang', lang);
        return u.toString();
    }

    function connect() {
        if (destroyed || fatal || ws) return;
        clearT(reconnectTimer);
        reconnectTimer = null;
        ready = false;
        setStatus(t.connecting);
        var socket;
        try {
            socket = new NativeWebSocket(wsUrl());
        } catch (e) {
            scheduleReconnect();
            return;
        }
        ws = socket;
        socket.onopen = function () {
            lastFrameAt = Date.now();
            pingTimer = win.setInterval(function () {
                if (Date.now() - lastFrameAt > DEAD_MS) { socket.close(); return; } // silent drop: start over
                raw({ type: 'ping' });
            }, PING_MS);
        };
        socket.onmessage = function (event) {
            lastFrameAt = Date.now();
            var frame;
            try { frame = JSONparse(event.data); } catch (e) { return; }
            onFrame(frame);
        };
        socket.onclose = function () {
            win.clearInterval(pingTimer);
            if (ws === socket) ws = null;
            ready = false;
            emit('connection', { connected: false });
            if (!destroyed && !fatal) scheduleReconnect();
        };
        socket.onerror = function () { /* onclose follows */ };
    }

    function scheduleReconnect() {
        if (reconnectTimer || destroyed || fatal) return;
        setStatus(t.offline);
        var delay = Math.min(30000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
        attempt = Math.min(attempt + 1, 10);
        reconnectTimer = setT(function () { reconnectTimer = null; connect(); }, delay);
    }

    function reconnectNow() {
        if (ws || destroyed || fatal) return;
        attempt = 0;
        clearT(reconnectTimer);
        reconnectTimer = null;
        connect();
    }

    function raw(frame) {
        if (!ws || ws.readyState !== 1) return false;
        ws.send(JSONstringify(frame));
        return true;
    }

    /// Queues a frame that needs an ack (messages, buttons, identify, params, start) and sends it when ready.
    function enqueue(frame) {
        frame.id = frame.id || newId();
        outbox.push(frame);
        persist();
        if (ready) raw(frame);
        return frame.id;
    }

    function onFrame(f) {
        switch (f.type) {
            case 'session':
                if (f.token) { // a new visitor (first visit, or the old token is gone): nothing to resume
                    if (token) { messages = []; lastN = 0; seenN = 0; unread = 0; }
                    token = f.token;
                    persist();
                }
                started = !!f.started;
                break;
            case 'messages':
                (f.items || []).forEach(addMessage);
                render();
                markSeen();
                break;
            case 'ready':
                ready = true;
                attempt = 0;
                setStatus('');
                emit('connection', { connected: true });
                outbox.forEach(raw); // unacknowledged frames, same ids: the server answers repeats, never reruns
                if (isOpen && !started && !hasStartFrame()) startDialog();
                markSeen();
                emit('ready', { visitor: f.visitor });
                break;
            case 'ack':
                settle(f.id, null);
                break;
            case 'error':
                if (f.id) {
                    if (f.code === 'rate_limited') { setT(function () { resend(f.id); }, 2000); return; }
                    settle(f.id, f);
                } else if (f.code in FATAL && FATAL[f.code]) {
                    fatal = f;
                    setStatus(f.code === 'too_many_sockets' ? f.message : t.unavailable);
                }
                emit('error', { code: f.code, message: f.message, id: f.id });
                break;
            default:
                break;
        }
    }

    function hasStartFrame() {
        return outbox.some(function (f) { return f.type === 'start' || f.type === 'message' || f.type === 'button'; });
    }

    function resend(id) {
        for (var i = 0; i < outbox.length; i++) if (outbox[i].id === id) raw(outbox[i]);
    }

    /// A frame was answered: drop it from the outbox; a refused message stays on screen marked as failed.
    function settle(id, error) {
        outbox = outbox.filter(function (f) { return f.id !== id; });
        persist();
        if (error) {
            messages.forEach(function (m) {
                if (m.id === id && m.pending) { m.pending = false; m.failed = error.message || t.failed; }
            });
            render();
        }
    }

    function addMessage(item) {
        if (typeof item.n !== 'number') return;
        if (item.n > lastN) lastN = item.n;
        for (var i = 0; i < messages.length; i++) {
            var m = messages[i];
            if (m.n === item.n) return; // already shown (history after a reconnect)
            if (!m.n && item.id && m.id === item.id) { // our own message came back with its number
                messages.splice(i, 1);
                break;
            }
        }
        var msg = { n: item.n, from: item.from, text: item.text || '', buttons: item.buttons || [],
                    id: item.id, created_at: item.created_at };
        var at = messages.length;
        while (at > 0 && messages[at - 1].n && messages[at - 1].n > msg.n) at--;
        messages.splice(at, 0, msg);
        if (msg.from !== 'client') {
            started = true;
            if (msg.n > seenN && (!isOpen || doc.hidden)) { unread += 1; emit('unread', { count: unread }); }
        }
        emit('message', { n: msg.n, from: msg.from, text: msg.text, buttons: msg.buttons.slice() });
    }

    function markSeen() {
        if (!isOpen || doc.hidden) return;
        if (lastN > seenN) { seenN = lastN; persist(); }
        if (!ready || lastN <= seenSent) return;
        seenSent = lastN;
        raw({ type: 'seen', n: lastN });
    }

    // --- actions -----------------------------------------------------------------------------------------------
    function sendText(text) {
        text = String(text == null ? '' : text);
        if (!text.trim()) return null;
        if (config && text.length > config.limits.max_text_bytes) text = text.slice(0, config.limits.max_text_bytes);
        var id = enqueue({ type: 'message', text: text });
        messages.push({ from: 'client', text: text, id: id, pending: true, buttons: [] });
        started = true;
        render();
        return id;
    }

    function pressButton(button) {
        var id = enqueue({ type: 'button', button: button.id });
        messages.push({ from: 'client', text: button.text, id: id, pending: true, buttons: [] });
        started = true;
        render();
    }

    function startDialog() {
        if (started || hasStartFrame()) return;
        started = true;
        enqueue({ type: 'start' });
    }

    function upload(file) {
        if (!token || !config) return;
        if (file.size > config.limits.max_upload_bytes) { note(t.tooBig + ': ' + file.name); return; }
        var url = new URL(config.upload_path, server);
        url.searchParams.set('token', token);
        url.searchParams.set('name', file.name);
        var shown = note(t.uploading + ': ' + file.name + '…');
        nativeFetch(url.toString(), {
            method: 'POST', mode: 'cors', credentials: 'omit', body: file,
            headers: { 'Content-Type': file.type || 'application/octet-stream' }
        }).then(function (res) {
            return res.json().then(function (body) {
                dropNote(shown);
                if (!res.ok) note((body.error && body.error.message) || t.failed);
                // the file's message arrives over the socket like any other
            });
        }).catch(function () { dropNote(shown); note(t.failed + ': ' + file.name); });
    }

    // --- UI ----------------------------------------------------------------------------------------------------
    var CSS = [
        // !important: a page rule with !important on every element (*) would otherwise win on the host element.
        ':host{all:initial!important;display:block!important;position:fixed!important;z-index:2147483000!important;',
        'bottom:var(--y)!important;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif!important;',
        'color:var(--text)!important;visibility:visible!important;opacity:1!important;-webkit-font-smoothing:antialiased}',
        ':host([data-side=right]){right:var(--x)!important}:host([data-side=left]){left:var(--x)!important}',
        '*{box-sizing:border-box;margin:0;padding:0;font:inherit;color:inherit}',
        '.launcher{width:56px;height:56px;border-radius:50%;border:0;background:var(--primary);color:var(--primary-text);',
        'cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;',
        'position:relative}',
        '.launcher svg{width:28px;height:28px;fill:currentColor}',
        '.badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;border-radius:10px;background:#dc2626;',
        'color:#fff;font-size:12px;line-height:20px;text-align:center;padding:0 5px}',
        '.badge[hidden],.panel[hidden],.status[hidden]{display:none}',
        '.panel{position:absolute;bottom:68px;width:370px;height:560px;max-height:calc(100vh - 100px);',
        'background:var(--background);border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.25);display:flex;',
        'flex-direction:column;overflow:hidden}',
        ':host([data-side=right]) .panel{right:0}:host([data-side=left]) .panel{left:0}',
        '.head{background:var(--primary);color:var(--primary-text);padding:14px 16px;display:flex;align-items:center;gap:10px}',
        '.head img{width:32px;height:32px;border-radius:50%;object-fit:cover}',
        '.title{flex:1;font-weight:600;font-size:16px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}',
        '.x{background:none;border:0;color:inherit;cursor:pointer;font-size:22px;line-height:1;padding:2px 6px}',
        '.status{padding:6px 12px;font-size:12px;background:#fef3c7;color:#92400e}',
        '.log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:6px}',
        '.msg{max-width:80%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;word-wrap:break-word;',
        'overflow-wrap:anywhere}',
        '.bot,.operator,.greeting{align-self:flex-start;background:var(--bot-bubble);color:var(--bot-text);',
        'border-bottom-left-radius:4px}',
        '.client{align-self:flex-end;background:var(--client-bubble);color:var(--client-text);border-bottom-right-radius:4px}',
        '.system,.note{align-self:center;background:none;color:#6b7280;font-size:12px;text-align:center}',
        '.pending{opacity:.6}.failed{outline:1px solid #dc2626}',
        '.err{display:block;font-size:11px;color:#dc2626;text-align:right;margin-top:2px}',
        '.msg a{text-decoration:underline;color:inherit}',
        '.buttons{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start;max-width:90%}',
        '.buttons button{border:1px solid var(--primary);color:var(--primary);background:var(--background);',
        'border-radius:16px;padding:6px 12px;cursor:pointer}',
        '.buttons button:hover{background:var(--primary);color:var(--primary-text)}',
        '.buttons button:disabled{opacity:.5;cursor:default}',
        '.bar{display:flex;align-items:flex-end;gap:6px;padding:8px;border-top:1px solid rgba(0,0,0,.08)}',
        'textarea{flex:1;resize:none;border:1px solid rgba(0,0,0,.15);border-radius:10px;padding:8px 10px;',
        'max-height:120px;min-height:38px;background:var(--background);color:var(--text);outline:none}',
        'textarea:focus{border-color:var(--primary)}',
        '.icon{width:38px;height:38px;border:0;border-radius:10px;background:none;cursor:pointer;display:flex;',
        'align-items:center;justify-content:center;color:var(--text)}',
        '.icon svg{width:22px;height:22px;fill:currentColor}',
        '.send{background:var(--primary);color:var(--primary-text)}',
        '.icon:disabled{opacity:.4;cursor:default}',
        'input[type=file]{display:none}',
        '@media (max-width:480px){.panel{position:fixed;inset:0;width:auto;height:auto;max-height:none;border-radius:0}}'
    ].join('');
    var ICON_CHAT = '<svg viewBox="0 0 24 24"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
    var ICON_CLIP = '<svg viewBox="0 0 24 24"><path d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5H9v9a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v11.5a6 6 0 0 0 12 0v-10z"/></svg>';
    var ICON_SEND = '<svg viewBox="0 0 24 24"><path d="M2 21l21-9L2 3v7l15 2-15 2z"/></svg>';

    function el(tag, cls, text) {
        var e = doc.createElement(tag);
        if (cls) e.className = cls;
        if (text != null) e.textContent = text;
        return e;
    }

    /// Text with http(s) links made clickable; everything else stays text (never HTML).
    function richText(node, text) {
        var re = /https?:\/\/[^\s<>"']+/g;
        var last = 0;
        var m;
        while ((m = re.exec(text))) {
            if (m.index > last) node.appendChild(doc.createTextNode(text.slice(last, m.index)));
            var a = el('a', null, m[0]);
            a.href = m[0];
            a.target = '_blank';
            a.rel = 'noopener noreferrer';
            node.appendChild(a);
            last = m.index + m[0].length;
        }
        if (last < text.length) node.appendChild(doc.createTextNode(text.slice(last)));
    }

    function build() {
        var host = doc.createElement('parley-widget');
        host.setAttribute('data-side', config.position.side === 'left' ? 'left' : 'right');
        var root = host.attachShadow({ mode: 'closed' });
        var style = el('style');
        var c = config.colors;
        style.textContent = ':host{--primary:' + c.primary + ';--primary-text:' + c.primary_text + ';--background:' +
            c.background + ';--text:' + c.text + ';--bot-bubble:' + c.bot_bubble + ';--bot-text:' + c.bot_text +
            ';--client-bubble:' + c.client_bubble + ';--client-text:' + c.client_text + ';--x:' +
            (config.position.offset_x | 0) + 'px;--y:' + (config.position.offset_y | 0) + 'px}' + CSS;
        root.appendChild(style);

        var panel = el('div', 'panel');
        panel.hidden = true;
        panel.setAttribute('role', 'dialog');
        panel.setAttribute('aria-label', config.title);
        var head = el('div', 'head');
        if (config.avatar_url) {
            var img = el('img');
            img.src = config.avatar_url;
            img.alt = '';
            head.appendChild(img);
        }
        head.appendChild(el('div', 'title', config.title));
        var x = el('button', 'x', '×');
        x.setAttribute('aria-label', t.close);
        x.onclick = function () { api.close(); };
        head.appendChild(x);
        var status = el('div', 'status');
        status.hidden = true;
        var log = el('div', 'log');
        log.setAttribute('role', 'log');
        log.setAttribute('aria-live', 'polite');
        var bar = el('div', 'bar');
        var file = el('input');
        file.type = 'file';
        file.accept = 'image/*,application/pdf,text/plain,text/csv,.doc,.docx,.xls,.xlsx,.zip';
        var clip = el('button', 'icon attach');
        clip.innerHTML = ICON_CLIP;
        clip.setAttribute('aria-label', t.attach);
        clip.title = t.attach;
        clip.onclick = function () { file.click(); };
        file.onchange = function () {
            Array.prototype.forEach.call(file.files || [], upload);
            file.value = '';
        };
        var input = el('textarea');
        input.rows = 1;
        input.placeholder = config.placeholder;
        input.setAttribute('aria-label', config.placeholder);
        input.maxLength = config.limits.max_text_bytes;
        var send = el('button', 'icon send');
        send.innerHTML = ICON_SEND;
        send.setAttribute('aria-label', t.send);
        send.title = t.send;
        function submit() {
            if (sendText(input.value)) input.value = '';
            input.focus();
        }
        send.onclick = submit;
        input.addEventListener('keydown', function (e) {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
        });
        input.addEventListener('input', function () {
            var now = Date.now();
            if (ready && started && now - lastTypingAt > 2000) { lastTypingAt = now; raw({ type: 'typing' }); }
        });
        bar.appendChild(file);
        bar.appendChild(clip);
        bar.appendChild(input);
        bar.appendChild(send);
        panel.appendChild(head);
        panel.appendChild(status);
        panel.appendChild(log);
        panel.appendChild(bar);
        // Keys typed into the widget are the widget's: the page's shortcuts never see them.
        ['keydown', 'keyup', 'keypress'].forEach(function (type) {
            panel.addEventListener(type, function (e) { e.stopPropagation(); });
        });

        var launcher = el('button', 'launcher');
        launcher.innerHTML = ICON_CHAT;
        launcher.setAttribute('aria-label', t.open);
        var badge = el('span', 'badge');
        badge.hidden = true;
        launcher.appendChild(badge);
        launcher.onclick = function () { api.toggle(); };

        root.appendChild(panel);
        root.appendChild(launcher);
        ui = { host: host, panel: panel, status: status, log: log, input: input, badge: badge, clip: clip,
               notes: [] };
        attach();
        render();
    }

    // Single-page sites may rebuild <body>: put the widget back whenever it is removed.
    var observer = null;
    function attach() {
        if (!ui || destroyed) return;
        var parent = doc.body || doc.documentElement;
        if (ui.host.parentNode !== parent) parent.appendChild(ui.host);
        if (!observer && win.MutationObserver) {
            observer = new win.MutationObserver(function () {
                if (ui && !destroyed && !ui.host.isConnected) attach();
            });
        }
        if (observer) {
            observer.disconnect();
            observer.observe(doc.documentElement, { childList: true });
            if (doc.body) observer.observe(doc.body, { childList: true });
        }
    }

    function setStatus(text) {
        if (!ui) return;
        ui.status.textContent = text;
        ui.status.hidden = !text;
    }

    function note(text) {
        var n = { text: text };
        if (ui) { ui.notes.push(n); render(); }
        return n;
    }
    function dropNote(n) {
        if (!ui) return;
        ui.notes = ui.notes.filter(function (x) { return x !== n; });
        render();
    }

    function render() {
        if (!ui) return;
        var log = ui.log;
        var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
        while (log.firstChild) log.removeChild(log.firstChild);
        if (config.greeting) log.appendChild(el('div', 'msg greeting', config.greeting));
        var lastBot = -1;
        messages.forEach(function (m, i) { if (m.from !== 'client' && m.n) lastBot = i; });
        messages.forEach(function (m, i) {
            var cls = 'msg ' + (m.from === 'client' || m.from === 'bot' || m.from === 'operator' ? m.from : 'system');
            if (m.pending) cls += ' pending';
            if (m.failed) cls += ' failed';
            var bubble = el('div', cls);
            richText(bubble, m.text);
            if (m.n) bubble.setAttribute('data-n', String(m.n));
            if (m.created_at) bubble.title = new Date(m.created_at).toLocaleString();
            if (m.failed) bubble.appendChild(el('span', 'err', m.failed));
            if (m.text) log.appendChild(bubble);
            if (m.buttons && m.buttons.length && i === lastBot) {
                var row = el('div', 'buttons');
                m.buttons.forEach(function (b) {
                    var btn = el('button', null, b.text);
                    btn.onclick = function () { pressButton(b); };
                    row.appendChild(btn);
                });
                log.appendChild(row);
            }
        });
        ui.notes.forEach(function (n) { log.appendChild(el('div', 'msg note', n.text)); });
        if (nearBottom || messages.length < 3) log.scrollTop = log.scrollHeight;
        ui.badge.textContent = unread > 99 ? '99+' : String(unread);
        ui.badge.hidden = unread === 0;
        ui.clip.disabled = !token;
    }

    // --- public API --------------------------------------------------------------------------------------------
    var api = function (method) {
        var args = Array.prototype.slice.call(arguments, 1);
        if (typeof api[method] === 'function' && method.charAt(0) !== '_') return api[method].apply(api, args);
        throw new Error('Parley: unknown method ' + method);
    };
    api.__parley = true;
    api.open = function () {
        if (isOpen || !ui) { isOpen = true; return; }
        isOpen = true;
        sessionFlag('open', true);
        ui.panel.hidden = false;
        unread = 0;
        render();
        ui.log.scrollTop = ui.log.scrollHeight;
        ui.input.focus();
        if (ready && !started) startDialog();
        markSeen();
        emit('open', {});
    };
    api.close = function () {
        if (!isOpen) return;
        isOpen = false;
        sessionFlag('open', false);
        if (ui) ui.panel.hidden = true;
        emit('close', {});
    };
    api.toggle = function () { return isOpen ? api.close() : api.open(); };
    api.isOpen = function () { return isOpen; };
    api.send = function (text) { return sendText(text); };
    api.startDialog = function () { startDialog(); };
    api.identify = function (visitor) {
        var f = { type: 'identify' };
        ['name', 'email', 'phone', 'external_id', 'language'].forEach(function (k) {
            if (visitor && visitor[k] != null && visitor[k] !== '') f[k] = String(visitor[k]);
        });
        return enqueue(f);
    };
    api.setParams = function (params, alias) {
        var f = { type: 'params', params: params || {} };
        if (alias) f.alias = String(alias);
        return enqueue(f);
    };
    api.on = function (name, fn) { (listeners[name] = listeners[name] || []).push(fn); return api; };
    api.off = function (name, fn) {
        listeners[name] = (listeners[name] || []).filter(function (x) { return x !== fn; });
        return api;
    };
    api.destroy = function () {
        destroyed = true;
        clearT(reconnectTimer);
        win.clearInterval(pingTimer);
        if (ws) { var s = ws; ws = null; s.close(); }
        if (observer) observer.disconnect();
        if (ui && ui.host.parentNode) ui.host.parentNode.removeChild(ui.host);
        ui = null;
        doc.removeEventListener('visibilitychange', onVisible);
        win.removeEventListener('online', reconnectNow);
        if (win.Parley === api) delete win.Parley;
    };

    function onVisible() {
        if (doc.hidden) return;
        reconnectNow();
        if (isOpen) { unread = 0; render(); markSeen(); }
    }

    // --- start -------------------------------------------------------------------------------------------------
    win.Parley = api;
    queued.forEach(function (args) {
        try { api.apply(null, Array.prototype.slice.call(args)); } catch (e) { if (win.console) win.console.error(e); }
    });
    if (!channel || !server || !NativeWebSocket || !nativeFetch || !doc.documentElement.attachShadow) {
        if (win.console) win.console.warn('Parley widget: missing data-channel, or the browser is too old');
        return;
    }
    var wantOpen = isOpen || preset.open === true || sessionFlag('open') ||
        (script && script.getAttribute('data-open') === 'true');
    isOpen = false;

    function fetchConfig(delay) {
        setT(function () {
            if (destroyed) return;
            nativeFetch(new URL('/widget/' + encodeURIComponent(channel) + '/config', server).toString(),
                        { mode: 'cors', credentials: 'omit' })
                .then(function (res) {
                    return res.json().then(function (body) {
                        if (!res.ok) {
                            var e = body && body.error ? body.error : { code: 'http_' + res.status, message: '' };
                            if (win.console) win.console.warn('Parley widget: ' + e.code + ': ' + e.message);
                            emit('error', e);
                            if (res.status >= 500 || res.status === 429) fetchConfig(Math.min(30000, (delay || 500) * 2));
                            return;
                        }
                        config = body;
                        if (config.language && STRINGS[config.language.split('-')[0]]) {
                            lang = config.language.split('-')[0];
                            t = STRINGS[lang];
                        }
                        build();
                        doc.addEventListener('visibilitychange', onVisible);
                        win.addEventListener('online', reconnectNow);
                        connect();
                        if (wantOpen || config.open_on_load) api.open();
                    });
                })
                .catch(function () { fetchConfig(Math.min(30000, (delay || 500) * 2)); });
        }, delay || 0);
    }
    fetchConfig(0);
})(window, document);
