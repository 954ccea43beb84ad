// The osscallback upload page: asks this server for a grant per file, POSTs
// the file straight to the bucket with the grant's fields (file last), and
// shows what the verified callback answered.  Text from file names and
// server answers is only ever set with textContent.
"use strict";

const MAX_PARALLEL = 3;
const STATES = {
  waiting: "Waiting",
  uploading: "Uploading",
  verifying: "Verifying",
  done: "Done",
  failed: "Failed",
};

const queue = [];
let limits = { max_size: null, allow_types: [], object_url: null };

const $ = (selector) => document.querySelector(selector);

function announce(text) {
  $("#announcer").textContent = text;
}

function formatBytes(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? String(value) : value.toFixed(1)) + " " + units[unit];
}

function typeAllowed(type) {
  if (!limits.allow_types.length) return true;
  return limits.allow_types.some((pattern) =>
    pattern.endsWith("/*") ? type.startsWith(pattern.slice(0, -1)) : type === pattern
  );
}

// --- one upload ----------------------------------------------------------

class Upload {
  constructor(file) {
    this.file = file;
    this.state = "waiting";
    this.sent = 0;
    this.speed = 0;
    this.xhr = null;
    this.grant = null;
    this.expiredRetried = false;
    this.node = $("#upload-item").content.firstElementChild.cloneNode(true);
    this.node.querySelector(".name").textContent = file.name || "(pasted file)";
    this.bar = this.node.querySelector("progress");
    this.bar.setAttribute("aria-label", "Progress of " + (file.name || "pasted file"));
    this.node.querySelector(".cancel").addEventListener("click", () => this.cancel());
    this.node.querySelector(".retry").addEventListener("click", () => this.retry());
    this.node.querySelector(".confirm").addEventListener("click", () => this.confirm());
    this.show();
  }

  set(state, detail) {
    this.state = state;
    this.detail = detail || "";
    this.show();
    const name = this.file.name || "pasted file";
    if (state === "done" || state === "failed") {
      announce(name + ": " + STATES[state] + (detail ? ". " + detail : "."));
    }
  }

  show() {
    const node = this.node;
    node.dataset.state = this.state;
    node.querySelector(".state").textContent = STATES[this.state];
    node.querySelector(".detail").textContent = this.detail || "";
    const total = this.file.size;
    this.bar.value = total ? Math.round((this.sent / total) * 100) : this.state === "done" ? 100 : 0;
    let numbers = formatBytes(this.sent) + " of " + formatBytes(total);
    if (this.state === "uploading" && this.speed) numbers += " at " + formatBytes(this.speed) + "/s";
    node.querySelector(".numbers").textContent = numbers;
    node.querySelector(".cancel").hidden = !["waiting", "uploading"].includes(this.state);
    node.querySelector(".retry").hidden = this.state !== "failed" || this.callbackFailed;
    node.querySelector(".confirm").hidden = !(this.state === "failed" && this.callbackFailed);
  }

  // The browser's own checks; the server decides again.
  precheck() {
    if (limits.max_size !== null && this.file.size > limits.max_size) {
      return "Too large: " + formatBytes(this.file.size) + "; the limit is " + formatBytes(limits.max_size) + ".";
    }
    if (!typeAllowed(this.file.type || "")) {
      return "Type not allowed: " + (this.file.type || "unknown") + "; allowed: " + limits.allow_types.join(", ") + ".";
    }
    return null;
  }

  async fetchGrant() {
    const query = new URLSearchParams({ name: this.file.name || "pasted", size: String(this.file.size) });
    if (this.file.type) query.set("type", this.file.type);
    const response = await fetch("policy?" + query, { headers: { Accept: "application/json" } });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.message || "The server refused the upload.");
    return answer;
  }

  async start() {
    this.callbackFailed = false;
    this.set("uploading");
    try {
      this.grant = await this.fetchGrant();
    } catch (error) {
      this.set("failed", error.message);
      return;
    }
    if (this.state !== "uploading") return; // cancelled meanwhile
    await this.send();
  }

  send() {
    return new Promise((resolve) => {
      const form = new FormData();
      for (const [name, value] of Object.entries(this.grant.fields)) form.append(name, value);
      form.append("file", this.file);
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      let last = { time: performance.now(), sent: 0 };
      xhr.upload.addEventListener("progress", (event) => {
        const now = performance.now();
        if (now - last.time > 250) {
          const rate = ((event.loaded - last.sent) * 1000) / (now - last.time);
          this.speed = this.speed ? this.speed * 0.7 + rate * 0.3 : rate;
          last = { time: now, sent: event.loaded };
        }
        this.sent = event.loaded;
        this.show();
      });
      xhr.upload.addEventListener("load", () => {
        this.sent = this.file.size;
        this.set("verifying", "Stored; waiting for the server to verify it.");
      });
      xhr.addEventListener("load", () => {
        this.finish(xhr).then(resolve);
      });
      xhr.addEventListener("error", () => {
        this.set("failed", "The connection to the bucket failed.");
        resolve();
      });
      xhr.addEventListener("abort", () => resolve());
      xhr.open("POST", this.grant.url);
      xhr.send(form);
    });
  }

  async finish(xhr) {
    this.xhr = null;
    if (xhr.status === 200) {
      this.sent = this.file.size;
      this.set("done", describeAnswer(xhr.responseText));
      refreshRecent();
      return;
    }
    if (xhr.status === 203) {
      this.callbackFailed = true;
      this.set("failed", "Callback failed: the file is stored, but the server did not hear about it. " + ossMessage(xhr.responseText));
      return;
    }
    const code = ossCode(xhr.responseText);
    const message = ossMessage(xhr.responseText);
    if (code === "AccessDenied" && /expired/i.test(message) && !this.expiredRetried) {
      this.expiredRetried = true;
      this.sent = 0;
      this.set("uploading", "The grant expired; asking for a new one.");
      await this.start();
      return;
    }
    if (code === "EntityTooLarge") {
      this.set("failed", "Too large for its grant. " + message);
    } else if (message) {
      this.set("failed", "OSS refused the upload: " + message);
    } else {
      this.set("failed", "The upload failed (HTTP " + xhr.status + ").");
    }
  }

  cancel() {
    if (this.xhr) this.xhr.abort();
    this.xhr = null;
    this.set("failed", "Cancelled.");
    pump();
  }

  retry() {
    this.sent = 0;
    this.speed = 0;
    this.expiredRetried = false;
    const problem = this.precheck();
    if (problem) {
      this.set("failed", problem);
      return;
    }
    this.set("waiting");
    pump();
  }

  async confirm() {
    this.set("verifying", "Asking the bucket for the stored file.");
    try {
      const response = await fetch(this.grant.confirm, { method: "POST" });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.message || "It could not be confirmed.");
      this.callbackFailed = false;
      this.set("done", "Confirmed and recorded.");
      refreshRecent();
    } catch (error) {
      this.set("failed", error.message);
    }
  }
}

// --- OSS answers ---------------------------------------------------------

function ossField(text, field) {
  try {
    const xml = new DOMParser().parseFromString(text, "application/xml");
    const node = xml.querySelector("Error > " + field);
    return node ? node.textContent : "";
  } catch (error) {
    return "";
  }
}

const ossCode = (text) => ossField(text, "Code");
const ossMessage = (text) => ossField(text, "Message");

function describeAnswer(text) {
  try {
    const answer = JSON.parse(text);
    if (answer.message) return String(answer.message);
    if (answer.upload) return "Verified and recorded as " + answer.upload.key + ".";
  } catch (error) {
    // Not JSON: show nothing more.
  }
  return "Verified and recorded.";
}

// --- the queue -----------------------------------------------------------

function pump() {
  const active = queue.filter((u) => u.state === "uploading" || u.state === "verifying").length;
  let free = MAX_PARALLEL - active;
  for (const upload of queue) {
    if (free <= 0) break;
    if (upload.state === "waiting") {
      free -= 1;
      upload.start().then(pump);
    }
  }
}

function addFiles(files) {
  const list = $("#queue");
  for (const file of files) {
    const upload = new Upload(file);
    queue.push(upload);
    list.appendChild(upload.node);
    const problem = upload.precheck();
    if (problem) upload.set("failed", problem);
  }
  $("#queue-empty").hidden = queue.length > 0;
  announce(files.length + (files.length === 1 ? " file" : " files") + " added.");
  pump();
}

// --- recent uploads ------------------------------------------------------

function objectURL(key) {
  return limits.object_url + key.split("/").map(encodeURIComponent).join("/");
}

async function refreshRecent() {
  let answer;
  try {
    const response = await fetch("uploads?limit=12");
    if (!response.ok) return;
    answer = await response.json();
  } catch (error) {
    return;
  }
  const list = $("#recent");
  list.replaceChildren();
  for (const upload of answer.uploads) {
    const node = $("#recent-item").content.firstElementChild.cloneNode(true);
    node.querySelector(".name").textContent = upload.key.split("/").pop();
    node.querySelector(".name").title = upload.key;
    const when = new Date(upload.received_at * 1000).toLocaleString();
    node.querySelector(".meta").textContent = formatBytes(upload.size) + ", " + when;
    if (limits.object_url && String(upload.content_type).startsWith("image/")) {
      const image = node.querySelector(".thumb");
      image.src = objectURL(upload.key);
      image.hidden = false;
    }
    list.appendChild(node);
  }
  $("#recent-empty").hidden = answer.uploads.length > 0;
}

// --- start ---------------------------------------------------------------

async function loadLimits() {
  try {
    const response = await fetch("limits");
    if (response.ok) limits = await response.json();
  } catch (error) {
    return;
  }
  const parts = [];
  if (limits.max_size !== null) parts.push("up to " + formatBytes(limits.max_size) + " each");
  if (limits.allow_types.length) parts.push("types " + limits.allow_types.join(", "));
  if (parts.length) $("#limits").textContent = "Files go straight to the bucket, " + parts.join("; ") + ".";
  if (limits.allow_types.length) $("#picker").accept = limits.allow_types.join(",");
}

function wire() {
  const zone = $("#dropzone");
  $("#picker").addEventListener("change", (event) => {
    addFiles(Array.from(event.target.files));
    event.target.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    addFiles(Array.from(event.dataTransfer.files));
  });
  // A file dropped beside the zone must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData ? event.clipboardData.files : []);
    if (files.length) addFiles(files);
  });
}

wire();
loadLimits().then(refreshRecent);
