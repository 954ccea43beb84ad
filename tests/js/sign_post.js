// Signs a PostObject policy with Alibaba's own SDK (ali-oss), so the tests
// can check the embedded OSS against signatures osscallback did not make.
// Reads {version, policy, accessKeyId, accessKeySecret, region, date} as
// JSON on stdin; writes the SDK's form fields as JSON on stdout.
"use strict";

const OSS = require("ali-oss");

const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const client = new OSS({
  region: "oss-" + input.region,
  accessKeyId: input.accessKeyId,
  accessKeySecret: input.accessKeySecret,
  bucket: input.bucket,
});

let fields;
if (input.version === 1) {
  fields = client.calculatePostSignature(input.policy);
} else {
  const policy = Buffer.from(JSON.stringify(input.policy), "utf8").toString("base64");
  fields = {
    policy,
    "x-oss-signature": client.signPostObjectPolicyV4(input.policy, new Date(input.date)),
  };
}
process.stdout.write(JSON.stringify(fields));
