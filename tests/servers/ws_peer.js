#!/usr/bin/env node
// ws_peer.js [--tls CERT KEY] -- a real WebSocket server (Node's `ws`) with scripted
// behaviours, for tests/test_ws.c. Listens on 127.0.0.1, port 0; prints "PORT <n>"; exits
// when stdin closes or on SIGTERM. The request path picks the behaviour:
//   /echo            every message back, binary
//   /chunks          every message back split into 3 messages (boundaries mean nothing)
//   /fragmented      one message sent as 3 fragments with a ping between them
//   /ping            pings every 50 ms; pongs counted (GET /stats?id=...)
//   /close           after the first message: close 1000 (?code=none: a close without a status);
//                    the code the client answered with is recorded (1006 = it never answered)
//   /bigframe?n=N    one N-byte frame
//   /stall?ms=M      echo, but the socket is not read for the first M ms (writes back up)
//   /silent          accepts, then never reads nor sends (the socket is paused: no pongs, and
//                    the client's writes pile up)
//   /burst-fin       handcrafted: 101, 3 data frames and a close frame, then TCP FIN, in one write
//   /early           handcrafted: 101 and a 2000-byte data frame in one write, then silence
//   /reject?status=S HTTP S with a JSON body {"message":"no such network"}
//   /bad-accept      101 with a wrong Sec-WebSocket-Accept
//   /no-upgrade      200 OK
//   /masked          a correct 101, then a masked frame (servers must not mask)
//   /ext, /proto     a 101 accepting an extension / a subprotocol the client did not offer
//   /pingflood       400 pings of 125 bytes every 5 ms (10 MB/s), and the socket is never read
//   /auth            echo when `Authorization: Bearer k`, else 401
//   /utf8?case=C     handcrafted text frames (UTF8_CASES below) written on the socket of a
//                    real `ws` connection, which records the close code the client sends;
//                    &raw=1: no `ws` behind it, the peer never answers nor closes
// Any path takes ?id=X; GET /stats?id=X answers what the peer saw on that connection as JSON:
// {pings, pongs, pongsMatched, clientPings, closeCode, messages}.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '../yagna-sim/node_modules/ws'));

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const acceptFor = (key) => crypto.createHash('sha1').update(key + GUID).digest('base64');
const stats = new Map();
const statFor = (id) => {
  if (!stats.has(id)) {
    stats.set(id, { pings: 0, pongs: 0, pongsMatched: 0, clientPings: 0, closeCode: null, messages: 0 });
  }
  return stats.get(id);
};

let server;
const tls = process.argv.indexOf('--tls');
if (tls >= 0) {
  server = https.createServer({ cert: fs.readFileSync(process.argv[tls + 1]), key: fs.readFileSync(process.argv[tls + 2]) });
} else {
  server = http.createServer();
}
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 << 20 });

server.on('request', (req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/stats') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(statFor(u.searchParams.get('id') || '')));
  } else if (u.pathname === '/no-upgrade') {
    res.end('ok');
  } else {
    res.statusCode = 404;
    res.end('not found\n');
  }
});

function raw101(req) {
  return Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                     `Sec-WebSocket-Accept: ${acceptFor(req.headers['sec-websocket-key'] || '')}\r\n\r\n`);
}

// An unmasked server frame, FIN set unless fin === false.
function frame(opcode, payload, fin) {
  const p = Buffer.from(payload);
  const len = p.length < 126 ? Buffer.from([p.length]) : Buffer.from([126, p.length >> 8, p.length & 255]);
  if (p.length > 65535) throw new Error('frames up to 64 KiB only');
  return Buffer.concat([Buffer.from([(fin === false ? 0 : 0x80) | opcode]), len, p]);
}

// Text messages as frames [opcode, fin, hex payload], for /utf8. `split` is valid: "A€B😀C"
// with both characters cut across fragments (a ping between two of them), then "é" whole.
const UTF8_CASES = {
  split: [[1, 0, '41e2'], [0, 0, '82ac42f0'], [9, 1, '70'], [0, 0, '9f98'], [0, 1, '8043'], [1, 1, 'c3a9']],
  'split-then-overlong': [[1, 0, '41e2'], [0, 1, '82ac'], [1, 1, '41c0af']],
  overlong: [[1, 1, '41e080af']],
  surrogate: [[1, 1, '41eda080']],
  'above-max': [[1, 1, '41f4908080']],
  'truncated-final': [[1, 0, '41'], [0, 1, '42e282']],
  'bad-continuation': [[1, 0, '41c3'], [0, 1, '28']],
  'bad-reason': [[8, 1, '03e8626fff']],
  'close-1-byte': [[8, 1, '03']],
};
const utf8Frames = (name) => Buffer.concat(UTF8_CASES[name].map(([op, fin, hex]) => frame(op, Buffer.from(hex, 'hex'), !!fin)));

server.on('upgrade', (req, socket, head) => {
  const u = new URL(req.url, 'http://x');
  const mode = u.pathname;
  const st = statFor(u.searchParams.get('id') || '');
  socket.on('error', () => {});
  if (mode === '/reject') {
    const status = Number(u.searchParams.get('status') || 404);
    const body = JSON.stringify({ message: 'no such network' });
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] || 'Error'}\r\nContent-Type: application/json\r\n` +
               `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    return;
  }
  if (mode === '/no-upgrade') {
    socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
    return;
  }
  if (mode === '/auth' && req.headers.authorization !== 'Bearer k') {
    const body = 'missing or wrong app key';
    socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    return;
  }
  if (mode === '/bad-accept') {
    // the accept for a different key; the connection stays open so only the header can tell
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                 `Sec-WebSocket-Accept: ${acceptFor('x' + req.headers['sec-websocket-key'])}\r\n\r\n`);
    return;
  }
  if (mode === '/ext' || mode === '/proto') {
    // a 101 that accepts what the client never offered
    const extra = mode === '/ext' ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : 'Sec-WebSocket-Protocol: chat\r\n';
    socket.write(raw101(req).toString().replace('\r\n\r\n', `\r\n${extra}\r\n`));
    return;
  }
  if (mode === '/masked') {
    socket.write(raw101(req));
    const mask = Buffer.from([1, 2, 3, 4]);
    const data = Buffer.from('hello').map((b, i) => b ^ mask[i & 3]);
    socket.write(Buffer.concat([Buffer.from([0x82, 0x80 | data.length]), mask, data]));
    return;
  }
  if (mode === '/burst-fin') {
    socket.end(Buffer.concat([raw101(req), frame(2, 'one,'), frame(2, 'two,'), frame(2, 'three'),
                              frame(8, Buffer.from([0x03, 0xe8]))]));
    return;
  }
  if (mode === '/utf8' && u.searchParams.get('raw')) {
    socket.write(Buffer.concat([raw101(req), utf8Frames(u.searchParams.get('case'))]));
    return;
  }
  if (mode === '/early') {
    socket.write(Buffer.concat([raw101(req), frame(2, Buffer.alloc(2000, 0x65))]));
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('ping', () => st.clientPings++);
    ws.on('close', (code) => { st.closeCode = code; });
    ws.on('error', () => {});
    ws.on('pong', (data) => {
      st.pongs++;
      if (data.toString() === `p${st.pongs}`) st.pongsMatched++;
    });
    ws.on('message', (data) => {
      st.messages++;
      if (mode === '/echo' || mode === '/auth' || mode === '/stall') {
        ws.send(data, { binary: true });
      } else if (mode === '/chunks') {
        const a = Math.floor(data.length / 3), b = Math.floor((2 * data.length) / 3);
        ws.send(data.subarray(0, a), { binary: true });
        ws.send(data.subarray(a, b), { binary: true });
        ws.send(data.subarray(b), { binary: true });
      } else if (mode === '/close' && st.messages === 1) {
        if (u.searchParams.get('code') === 'none') ws.close();
        else ws.close(1000, 'bye');
      }
    });
    if (mode === '/fragmented') {
      ws.send('alpha-', { binary: true, fin: false });
      ws.ping('between');
      ws.send('beta-', { binary: true, fin: false });
      ws.send('gamma', { binary: true, fin: true });
    } else if (mode === '/ping') {
      const timer = setInterval(() => {
        if (ws.readyState !== ws.OPEN) return clearInterval(timer);
        st.pings++;
        ws.ping(`p${st.pings}`);
      }, 50);
      ws.on('close', () => clearInterval(timer));
    } else if (mode === '/bigframe') {
      ws.send(Buffer.alloc(Number(u.searchParams.get('n') || 0), 0x61), { binary: true });
    } else if (mode === '/stall') {
      socket.pause();
      setTimeout(() => socket.resume(), Number(u.searchParams.get('ms') || 300));
    } else if (mode === '/pingflood') {
      socket.pause(); // the client's pongs pile up on its side
      const timer = setInterval(() => {
        if (ws.readyState !== ws.OPEN) return clearInterval(timer);
        for (let k = 0; k < 400; k++) { st.pings++; ws.ping(Buffer.alloc(125, st.pings & 255)); }
      }, 5);
      ws.on('close', () => clearInterval(timer));
    } else if (mode === '/utf8') {
      socket.write(utf8Frames(u.searchParams.get('case'))); // behind ws's back: it sends nothing itself
    } else if (mode === '/silent') {
      socket.pause(); // after ws attached its 'data' listener, which resumed the socket
    }
  });
});

const quit = () => process.exit(0);
process.on('SIGTERM', quit);
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.resume();
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
