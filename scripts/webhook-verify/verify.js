// Checks gmailwatch webhook signatures with the independent standardwebhooks
// npm package. Reads a JSON array of cases on stdin and writes one result per
// case as a JSON array on stdout:
//   {"op":"verify","secret":"whsec_...","body":"...","headers":{...}} -> {"ok":true} or {"ok":false,"error":"..."}
//   {"op":"sign","secret":"whsec_...","id":"...","timestamp":1614265330,"body":"..."} -> {"ok":true,"signature":"v1,..."}
"use strict";
const { Webhook } = require("standardwebhooks");

function run(c) {
  try {
    const wh = new Webhook(c.secret);
    if (c.op === "sign") {
      return { ok: true, signature: wh.sign(c.id, new Date(c.timestamp * 1000), c.body) };
    }
    wh.verify(c.body, c.headers);
    return { ok: true };
  } catch (e) {
    return { ok: false, error: e.message };
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(run)) + "\n");
});
