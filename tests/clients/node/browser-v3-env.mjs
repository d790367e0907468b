// A browser-like environment for engine.io-client 3.x in Node.
//
// Why: in Node, engine.io-client 3.x polls through xmlhttprequest-ssl, which
// has no `responseType`, so the client always asks for base64 payloads (b64=1)
// and never exercises the XHR2 binary payload (application/octet-stream) that
// every browser v2 client uses; and its JSONP transport needs a DOM (<script>
// tags for GETs, a <form> posted into an <iframe> for POSTs). This module makes
// the same client library take its browser code paths:
//
// - the client's engine.io-parser is swapped for that package's own browser
//   build (lib/browser.js: ArrayBuffer/Blob payloads, as bundled for browsers);
// - its XMLHttpRequest is a small XHR2 implementation on node:http that
//   supports `responseType = "arraybuffer"` and Blob/ArrayBuffer bodies, and
//   logs every request (method, url, content types, status) in `xhrLog`;
// - `installDocumentShim()` adds a minimal `document` whose <script> elements
//   GET their src and run the JavaScript answer, and whose <form>.submit()
//   POSTs `d=...` urlencoded and then fires the target iframe's onload, as a
//   browser does for JSONP polling.
//
// Import this module BEFORE anything that loads `engine.io-client-v3`
// (helpers.mjs does), and only use polling transports with it.

import http from "node:http";
import { Module, createRequire } from "node:module";
import path from "node:path";
import vm from "node:vm";

const require = createRequire(import.meta.url);

const clientMain = require.resolve("engine.io-client-v3");
const resolveFromClient = (id) => require.resolve(id, { paths: [path.dirname(clientMain)] });
if (require.cache[clientMain]) {
  throw new Error("browser-v3-env.mjs must be imported before engine.io-client-v3 is loaded");
}

// 1. engine.io-parser (2.x) as the client resolves it -> its browser build.
const parserNode = resolveFromClient("engine.io-parser");
const parserBrowser = parserNode.replace(/index\.js$/, "browser.js");
require(parserBrowser);
require.cache[parserNode] = require.cache[parserBrowser];

/** Every request made through the XHR2 shim, in order. */
export const xhrLog = [];

// 2. A browser-like XMLHttpRequest (level 2) on node:http.
class BrowserXHR {
  constructor() {
    this.readyState = 0;
    this.responseType = ""; // XHR2: `null != xhr.responseType` is the client's check
    this.status = 0;
    this.response = null;
    this.responseText = "";
    this.onreadystatechange = null;
    this.withCredentials = false;
    this._headers = {};
    this._res = null;
    this._req = null;
    this._aborted = false;
  }

  open(method, url) {
    this._method = method;
    this._url = url;
    this.readyState = 1;
  }

  setRequestHeader(name, value) {
    this._headers[name] = value;
  }

  getResponseHeader(name) {
    const value = this._res?.headers[name.toLowerCase()];
    return value === undefined ? null : value;
  }

  abort() {
    this._aborted = true;
    this._req?.destroy();
  }

  send(body) {
    toBuffer(body).then(
      (data) => this._send(data),
      (err) => this._fail(err),
    );
  }

  _send(data) {
    const entry = {
      method: this._method,
      url: this._url,
      requestContentType: this._headers["Content-type"] ?? this._headers["Content-Type"],
      requestBytes: data ? data.length : 0,
      status: undefined,
      contentType: undefined,
    };
    xhrLog.push(entry);
    const headers = { ...this._headers };
    if (data) headers["Content-Length"] = String(data.length);
    const req = http.request(this._url, { method: this._method, headers });
    this._req = req;
    req.on("response", (res) => {
      this._res = res;
      this.status = res.statusCode;
      entry.status = res.statusCode;
      entry.contentType = res.headers["content-type"];
      this.readyState = 2; // HEADERS_RECEIVED: the client may set responseType now
      this._fire();
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () => {
        const buf = Buffer.concat(chunks);
        entry.responseBytes = buf;
        if (this.responseType === "arraybuffer") {
          this.response = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
        } else {
          this.responseText = buf.toString("utf8");
          this.response = this.responseText;
        }
        this.readyState = 4;
        this._fire();
      });
    });
    req.on("error", (err) => this._fail(err));
    req.end(data);
  }

  _fail() {
    if (this._aborted) return;
    this.status = 0;
    this.readyState = 4;
    this._fire();
  }

  _fire() {
    if (!this._aborted && typeof this.onreadystatechange === "function") this.onreadystatechange();
  }
}

async function toBuffer(body) {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return Buffer.from(body, "utf8");
  if (body instanceof Blob) return Buffer.from(await body.arrayBuffer());
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  throw new Error(`unsupported XHR body ${Object.prototype.toString.call(body)}`);
}

const xhrModule = require.resolve("engine.io-client-v3/lib/transports/xmlhttprequest.js");
{
  const shim = new Module(xhrModule);
  shim.filename = xhrModule;
  shim.loaded = true;
  shim.exports = BrowserXHR;
  require.cache[xhrModule] = shim;
}

/** Converts bytes to an exact ArrayBuffer, what browser code sends. */
export function toArrayBuffer(bytes) {
  if (bytes instanceof ArrayBuffer) return bytes;
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

// 3. A minimal DOM for the JSONP transport.
class FakeElement {
  constructor(tagName) {
    this.tagName = tagName.toUpperCase();
    this.style = {};
    this.attributes = {};
    this.children = [];
    this.parentNode = null;
  }

  setAttribute(name, value) {
    this.attributes[name] = String(value);
  }

  appendChild(child) {
    return this.insertBefore(child, null);
  }

  insertBefore(child, ref) {
    if (child.parentNode) child.parentNode.removeChild(child);
    const i = ref ? this.children.indexOf(ref) : -1;
    if (i >= 0) this.children.splice(i, 0, child);
    else this.children.push(child);
    child.parentNode = this;
    if (child.tagName === "SCRIPT" && isConnected(this)) runScript(child);
    return child;
  }

  removeChild(child) {
    const i = this.children.indexOf(child);
    if (i < 0) throw new Error("NotFoundError: not a child");
    this.children.splice(i, 1);
    child.parentNode = null;
    return child;
  }

  submit() {
    if (this.tagName !== "FORM") throw new Error("submit() on a non-form");
    submitForm(this);
  }
}

let documentRoot;

function isConnected(el) {
  for (let n = el; n; n = n.parentNode) if (n === documentRoot) return true;
  return false;
}

/** A <script src> GET: run the JavaScript answer, or fire onerror. */
function runScript(script) {
  const url = script.src;
  xhrLog.push({ method: "GET", url, jsonp: true });
  const entry = xhrLog[xhrLog.length - 1];
  http
    .get(url, (res) => {
      entry.status = res.statusCode;
      entry.contentType = res.headers["content-type"];
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const source = Buffer.concat(chunks).toString("utf8");
        entry.body = source;
        if (res.statusCode !== 200) {
          script.onerror?.(new Error(`script load failed: HTTP ${res.statusCode}`));
          return;
        }
        try {
          vm.runInThisContext(source, { filename: url });
        } catch (err) {
          script.onerror?.(err);
        }
      });
    })
    .on("error", (err) => script.onerror?.(err));
}

/** form.submit(): urlencoded POST of the named fields into the target iframe. */
function submitForm(form) {
  const fields = new URLSearchParams();
  for (const el of form.children) {
    if (el.tagName === "TEXTAREA" || el.tagName === "INPUT") fields.append(el.name, el.value ?? "");
  }
  const body = Buffer.from(fields.toString(), "utf8");
  const url = form.action;
  const entry = {
    method: (form.method || "GET").toUpperCase(),
    url,
    jsonp: true,
    requestContentType: "application/x-www-form-urlencoded",
    requestBytes: body.length,
  };
  xhrLog.push(entry);
  const req = http.request(url, {
    method: entry.method,
    headers: { "Content-Type": "application/x-www-form-urlencoded", "Content-Length": String(body.length) },
  });
  req.on("response", (res) => {
    entry.status = res.statusCode;
    entry.contentType = res.headers["content-type"];
    res.resume();
    res.on("end", () => {
      // The response loads into the iframe named by form.target.
      const iframe = form.children.find((c) => c.tagName === "IFRAME" && c.name === form.target);
      iframe?.onload?.();
    });
  });
  req.on("error", () => {});
  req.end(body);
}

/** Installs `globalThis.document` (JSONP needs it). Returns an uninstaller. */
export function installDocumentShim() {
  documentRoot = new FakeElement("html");
  const head = documentRoot.appendChild(new FakeElement("head"));
  const body = documentRoot.appendChild(new FakeElement("body"));
  globalThis.document = {
    documentElement: documentRoot,
    head,
    body,
    createElement(tag) {
      if (/[<>\s]/.test(tag)) throw new Error("InvalidCharacterError"); // as modern browsers do
      return new FakeElement(tag);
    },
    getElementsByTagName(tag) {
      const out = [];
      const walk = (n) => {
        for (const c of n.children) {
          if (c.tagName === tag.toUpperCase()) out.push(c);
          walk(c);
        }
      };
      walk(documentRoot);
      return out;
    },
  };
  return () => {
    delete globalThis.document;
  };
}
