// Regenerates contracts/legacy/json-parse-errors.jsonl: what Express's
// body-parser json() (strict, the default) answers for each body, on the
// Node release the legacy contract names (x-legacy.runtime.node). The
// orchestrator's JSON reader (orchestrator/src/node_json.rs) must give the
// same message for every line; `message_json` is null for accepted bodies.
//
//   cd /tmp && npm install body-parser@1.20 && \
//   NODE_PATH=/tmp/node_modules node contracts/legacy/tools/json-parse-errors.js \
//     > contracts/legacy/json-parse-errors.jsonl
'use strict';
const { Readable } = require('stream');
const json = require('body-parser').json();

const long = 'b'.repeat(30);
const bodies = [
  // accepted
  '{}', '[]', ' {"a":1} ', '{"a":"\\u00e9\\ud83d\\ude00"}', '{"a":-0.5e-3}', '{"to":"x","to":"y"}',
  '{"a":"\\ud800"}', '\n\t{"a":[1,{"b":null}]}\r\n',
  // strict mode: the first character
  '"hi"', ' 123', 'null', 'true', '  x', '-1', '\u00e9{}', '😀', 'x'.repeat(40), '   ', '\n',
  // values
  '{"to": }', '{"a":tru}', '{"a":trux}', '{"a":t"}', '{"a":t1}', '{"a":t }', '{"a":nul}', '{"a":nulL}',
  '{"a":falsy}', '{"a":f', '{"a":t', '{"a": undefined}', '{"a":NaN}', '{"a":infinity}', '{"a":.5}',
  '{"a":+1}', '[1,]', '[,1]', '{"a":[}', '{"a":', '[', '[1,', '{"a": 😀}', '{"a":1,"b":\u00e9}',
  // numbers
  '{"a":01}', '{"a":-01}', '{"a":00}', '{"a":-x}', '{"a":-}', '{"a":-', '{"a":1.}', '{"a":1.x}', '{"a":1.',
  '{"a":1.e}', '{"a":1e}', '{"a":1e+}', '{"a":1e"}', '{"a":1.5e5x}', '{"a":0x1}', '[01]',
  // strings
  '{"a":"b\nc"}', '{"a":"\t"}', '{"a":"\u0001"}', '{"a":"\\x"}', '{"a":"\\u12G4"}', '{"a":"\\u12',
  '{"a":"\\', '{"a":"\\€"}', '{"a":"\\\u0001"}', '{"a":"€x}', '{"a":"x', '{"a\nb":1}',
  // structure
  '{"a":1 "b":2}', '{"a":1,}', '{', '{ , }', "{'a':1}", '{a:1}', '{"a":1', '{"a"', '{"a" 1}',
  '{"a":1]', '[1 2]', '[1,2', '{"a":{}', '{"a" : 1 , }', '{1:2}', '{"a":"b"\u2028}',
  // after the value
  '{} x', '{}{}', '{} 1', '{} "a"', '{"a":1}}', '[1]]', '{"a":1}\u00a0', '{"a":1,"b":2,"c":3,"d":4}x',
  // excerpts: short, start, middle, end, and the 20/21 unit boundary
  '[' + ' '.repeat(17) + 'x]', '[' + ' '.repeat(18) + 'x]', '[x' + ' '.repeat(30) + ']',
  '[' + ' '.repeat(8) + 'x' + ' '.repeat(30) + ']', '[' + ' '.repeat(9) + 'x' + ' '.repeat(30) + ']',
  '[' + ' '.repeat(30) + 'x' + ' '.repeat(8) + ']', '[' + ' '.repeat(30) + 'x' + ' '.repeat(9) + ']',
  '{"to":"+447700900123", "from": Acme, "body": "hello"}',
  '{"a":"' + long + '",\n "c": }', '{"😀😀😀😀😀😀": x, "' + long + '": 1}',
  '{"to":"+447700900123","from":"Acme","body":"hello",}',
  '{"messages":[{"to":"+447700900123"},{"to":"+447700900124"}],"atomic":true',
];

function parse(body) {
  return new Promise((resolve) => {
    const buf = Buffer.from(body, 'utf8');
    const req = Readable.from([buf]);
    req.headers = { 'content-type': 'application/json', 'content-length': String(buf.length) };
    json(req, {}, (err) => resolve(err ? err.message : null));
  });
}

(async () => {
  for (const body of bodies) {
    const message = await parse(body);
    // The message as JSON.stringify writes it (lone surrogates escaped),
    // itself as a string, so every line parses in any JSON reader.
    const message_json = message === null ? null : JSON.stringify(message);
    process.stdout.write(JSON.stringify({ body, message_json }) + '\n');
  }
})();
