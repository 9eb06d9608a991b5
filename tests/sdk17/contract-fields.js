#!/usr/bin/env node
// Lists the wire fields of every Dolittle contracts message as the JavaScript
// SDK 17 sees them (@dolittle/runtime.contracts and @dolittle/contracts 5.4).
//
// For each message class under the global proto.dolittle namespace it reads
// the generated serializeBinaryToWriter function and records, per field, the
// field number, the jspb writer method (writeString, writeMessage,
// writeRepeatedMessage, ...) and, for message fields, the full proto name of
// the nested message type. Prints one sorted JSON object:
//
//   { "dolittle.runtime.events.CommittedEvent":
//       [ { "number": 1, "writer": "writeUint64" },
//         { "number": 2, "writer": "writeMessage", "type": "google.protobuf.Timestamp" }, ... ],
//     ... }
//
// The packages are resolved from node_modules next to this script
// (tests/sdk17/node_modules). Used to check server/contract/proto-v5 against
// what the SDK really puts on the wire.

'use strict';

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const PACKAGES = ['@dolittle/runtime.contracts', '@dolittle/contracts'];

function packageDir(name) {
    const pkg = require.resolve(`${name}/package.json`, { paths: [__dirname] });
    return path.dirname(pkg);
}

function findPbFiles(dir) {
    const out = [];
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) {
            if (entry.name !== 'node_modules') out.push(...findPbFiles(full));
        } else if (entry.name.endsWith('_pb.js') && !entry.name.endsWith('_grpc_pb.js')) {
            out.push(full);
        }
    }
    return out.sort();
}

// Load every generated module and remember, per file, which local variable
// name refers to which required module (the generated code references
// imported message types as <alias>.<Name>).
const aliasesByFile = new Map();
for (const pkg of PACKAGES) {
    for (const file of findPbFiles(packageDir(pkg))) {
        const req = createRequire(file);
        req(file);
        const aliases = new Map();
        const source = fs.readFileSync(file, 'utf8');
        const re = /var\s+([A-Za-z_$][\w$]*)\s*=\s*require\('([^']+)'\)/g;
        let m;
        while ((m = re.exec(source)) !== null) {
            aliases.set(m[1], req(m[2]));
        }
        aliasesByFile.set(file, aliases);
    }
}

const jspb = createRequire(path.join(packageDir('@dolittle/contracts'), 'package.json'))('google-protobuf');
const root = globalThis.proto;
if (!root || !root.dolittle) {
    throw new Error('generated contracts did not populate the global proto.dolittle namespace');
}

function isMessageClass(value) {
    return typeof value === 'function'
        && typeof value.serializeBinaryToWriter === 'function'
        && value.prototype instanceof jspb.Message;
}

// Full proto name of each message class (constructor -> "pkg.Name").
const names = new Map();
function walk(ns, prefix, depth) {
    if (depth > 12) return;
    for (const key of Object.keys(ns)) {
        const value = ns[key];
        const full = prefix ? `${prefix}.${key}` : key;
        if (isMessageClass(value)) {
            if (!names.has(value)) names.set(value, full);
            walk(value, full, depth + 1); // nested messages
        } else if (value && typeof value === 'object' && /^[a-z]/.test(key)) {
            walk(value, full, depth + 1); // package namespace
        }
    }
}
walk(root, '', 0);

function nameOf(ctor, fallback) {
    if (names.has(ctor)) return names.get(ctor);
    if (ctor && typeof ctor.displayName === 'string') return ctor.displayName.replace(/^proto\./, '');
    return fallback;
}

// Resolve the text "X_pb.Name" or "proto.a.b.Name" found in a serializer.
function resolveType(text) {
    if (text.startsWith('proto.')) {
        let value = globalThis;
        for (const part of text.split('.')) value = value && value[part];
        return nameOf(value, text.slice('proto.'.length));
    }
    const [alias, ...rest] = text.split('.');
    for (const aliases of aliasesByFile.values()) {
        if (!aliases.has(alias)) continue;
        let value = aliases.get(alias);
        for (const part of rest) value = value && value[part];
        if (isMessageClass(value)) return nameOf(value, text);
    }
    return `?${text}`;
}

const fieldRe = /writer\.(write\w+)\(\s*(\d+)\s*,\s*f\s*(?:,\s*([\w$.]+)\.serializeBinaryToWriter\s*)?\)/g;

const result = {};
for (const [ctor, full] of names) {
    if (!full.startsWith('dolittle.')) continue;
    const source = ctor.serializeBinaryToWriter.toString();
    const fields = [];
    let m;
    fieldRe.lastIndex = 0;
    while ((m = fieldRe.exec(source)) !== null) {
        const field = { number: Number(m[2]), writer: m[1] };
        if (m[3]) field.type = resolveType(m[3]);
        fields.push(field);
    }
    fields.sort((a, b) => a.number - b.number);
    result[full] = fields;
}

const sorted = {};
for (const key of Object.keys(result).sort()) sorted[key] = result[key];
process.stdout.write(JSON.stringify(sorted, null, 2) + '\n');
