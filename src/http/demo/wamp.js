// A small WAMP v2 (wamp.2.json) client for the switchboard demo page: HELLO/WELCOME, SUBSCRIBE + EVENT,
// PUBLISH (with acknowledge), CALL/RESULT, ERROR, GOODBYE. One instance is one connection: the page makes a
// new one to reconnect. No dependencies.
"use strict";
class WampSession {
  static connect(url, realm) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, ["wamp.2.json"]);
      const session = new WampSession(ws);
      ws.onopen = () => ws.send(JSON.stringify([1, realm, {
        roles: { publisher: {}, subscriber: {}, caller: {} }, agent: "switchboard-demo",
      }]));
      session._welcome = { resolve, reject };
      ws.onclose = (ev) => {
        if (session._welcome) session._welcome.reject(new Error(ev.reason || "connection closed"));
        for (const p of session.pending.values()) p.reject(new Error("connection closed"));
        session.pending.clear();
        // details: the close code and reason, and the GOODBYE reason URI if the router said goodbye first.
        const details = { code: ev.code, reason: ev.reason, goodbye: session.goodbye };
        if (session.onclose) session.onclose(ev.reason || session.goodbye || `code ${ev.code}`, details);
      };
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.pending = new Map();       // request id -> {resolve, reject, kind}
    this.handlers = new Map();      // subscription id -> [handler]
    this.onclose = null;            // (text, {code, reason, goodbye}) once the socket has closed
    this.goodbye = null;            // the router's GOODBYE reason URI, if it sent one
    ws.onmessage = (ev) => this._receive(JSON.parse(ev.data));
  }

  _request(message, kind, handler) {
    const id = this.nextId++;
    message.splice(1, 0, id);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, kind, handler });
      this.ws.send(JSON.stringify(message));
    });
  }

  _receive(msg) {
    const [code] = msg;
    if (code === 2) { this.id = msg[1]; this.details = msg[2]; this._welcome.resolve(this); this._welcome = null; return; }
    if (code === 3) { const w = this._welcome; this._welcome = null; if (w) w.reject(new Error(msg[2])); return; }
    if (code === 6) { this.goodbye = msg[2]; return; } // the router closes the socket right after it
    if (code === 36) {
      for (const h of this.handlers.get(msg[1]) || []) h(msg[4] || [], msg[5] || {}, msg[3] || {}, msg[2]);
      return;
    }
    const request = code === 8 ? msg[2] : msg[1];
    const p = this.pending.get(request);
    if (!p) return;
    this.pending.delete(request);
    if (code === 8) {
      const err = new Error((msg[5] && msg[5][0]) || msg[4]);
      err.uri = msg[4];
      p.reject(err);
    } else if (code === 33) {
      const list = this.handlers.get(msg[2]) || [];
      list.push(p.handler);
      this.handlers.set(msg[2], list);
      p.resolve(msg[2]);
    } else if (code === 17) { p.resolve(msg[2]); }
    else if (code === 50) { p.resolve((msg[3] || [])[0]); }
  }

  subscribe(topic, handler, options = {}) { return this._request([32, options, topic], "subscribe", handler); }

  publish(topic, args = [], kwargs = {}, options = {}) {
    if (!options.acknowledge) {
      this.ws.send(JSON.stringify([16, this.nextId++, options, topic, args, kwargs]));
      return Promise.resolve();
    }
    return this._request([16, options, topic, args, kwargs], "publish");
  }

  close() { if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000); }

  call(procedure, args = [], kwargs = {}) { return this._request([48, {}, procedure, args, kwargs], "call"); }
}
if (typeof module !== "undefined") module.exports = { WampSession };
