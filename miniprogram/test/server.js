'use strict';
// The real server for the end-to-end tests: built from this repository (or
// PANDACHAT_BIN), started on a loopback port, its address read from its log.

const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const REPO = path.resolve(__dirname, '../..');

// PANDACHAT_BIN: run this already built server binary instead of building one.
const PREBUILT = process.env.PANDACHAT_BIN || '';

function goMissing() {
  if (PREBUILT) return false;
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (r.error) return 'the Go toolchain (`go`) is not on PATH, so the server cannot be built';
  return false;
}

// buildServer(dir) → the path of a server binary (built into dir unless PREBUILT)
function buildServer(dir) {
  if (PREBUILT) return path.resolve(PREBUILT);
  const bin = path.join(dir, process.platform === 'win32' ? 'pandachat.exe' : 'pandachat');
  const build = spawnSync('go', ['build', '-o', bin, './cmd/pandachat'], { cwd: REPO, encoding: 'utf8', timeout: 600000 });
  if (build.status !== 0) {
    throw new Error('go build ./cmd/pandachat failed:\n' + (build.stderr || '') + (build.stdout || '') + (build.error ? String(build.error) : ''));
  }
  return bin;
}

function startServer(bin, args) {
  return new Promise(function (resolve, reject) {
    const child = spawn(bin, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    let done = false;
    const exited = new Promise(function (r) {
      child.on('exit', function (code, signal) { r({ code: code, signal: signal }); });
    });
    const onData = function (chunk) {
      log += chunk.toString('utf8');
      const m = /listening on (http:\/\/\S+)/.exec(log);
      if (m && !done) {
        done = true;
        resolve({ child: child, url: m[1].replace(/["'`.,;)\]}]+$/, ''), exited: exited, log: function () { return log; } });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', function (e) { if (!done) { done = true; reject(e); } });
    exited.then(function (r) {
      if (!done) {
        done = true;
        reject(new Error('server exited (' + JSON.stringify(r) + ') before "listening on http://…":\n' + log));
      }
    });
    setTimeout(function () {
      if (!done) {
        done = true;
        child.kill('SIGKILL');
        reject(new Error('no "listening on http://…" line from the server within 60 s:\n' + log));
      }
    }, 60000).unref();
  });
}

async function waitFor(fn, label, ms) {
  const limit = Date.now() + (ms || 15000);
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > limit) throw new Error('gave up waiting for: ' + label);
    await new Promise(function (r) { setTimeout(r, 20); });
  }
}

module.exports = { REPO, PREBUILT, goMissing, buildServer, startServer, waitFor };
