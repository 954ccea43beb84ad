// The minimal upload page: ask this server for a grant, then POST the file
// straight to the bucket with the grant's fields, the file last.
"use strict";

const form = document.getElementById("upload");
const status = document.getElementById("status");
const answer = document.getElementById("answer");

async function upload(file) {
  const query = new URLSearchParams({ name: file.name, size: String(file.size) });
  if (file.type) query.set("type", file.type);
  const grantResponse = await fetch("policy?" + query);
  const grant = await grantResponse.json();
  if (!grantResponse.ok) throw new Error(grant.message);

  const body = new FormData();
  for (const [name, value] of Object.entries(grant.fields)) body.append(name, value);
  body.append("file", file);
  status.textContent = "Uploading " + file.name + "…";
  const uploadResponse = await fetch(grant.url, { method: "POST", body });
  const text = await uploadResponse.text();
  return { ok: uploadResponse.status === 200, status: uploadResponse.status, text };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("file").files[0];
  if (!file) return;
  answer.textContent = "";
  status.textContent = "Asking for an upload grant…";
  try {
    const result = await upload(file);
    status.textContent = result.ok
      ? "Uploaded and verified."
      : "The upload failed (HTTP " + result.status + ").";
    answer.textContent = result.text;
  } catch (error) {
    status.textContent = "The upload failed: " + error.message;
  }
});
