#!/usr/bin/env node
'use strict';
// bench/ws_echo.js -- WebSocket echo peer for the tunnel benchmark: every message comes back
// as it was sent. Uses the `ws` package from tests/yagna-sim/node_modules (the same library
// the yagna stand-in's tunnel uses). Prints "PORT <n>" once listening on 127.0.0.1; exits
// when its stdin closes.
const path = require('node:path');
const WebSocket = require(path.join(__dirname, '..', 'tests', 'yagna-sim', 'node_modules', 'ws'));
const wss = new WebSocket.WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1 << 24 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => process.stdout.write(`PORT ${wss.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
