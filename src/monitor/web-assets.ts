// Where the monitor page and its vendor scripts come from: the package's web/ directory,
// uPlot's and Socket.IO's dist files from dist/, or the copies embedded in the standalone
// executable (scripts/build-exe.ts stores them under the same URL-like keys).
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import express, { type Express } from 'express';
import { embeddedAsset, isStandalone } from '../common/embedded-assets.js';

/** URL prefix → embedded asset key prefix; the build script embeds exactly these. */
export const EMBEDDED_WEB_PREFIXES: Readonly<Record<string, string>> = {
  '/assets/': 'web/assets/',
  '/vendor/uplot/': 'vendor/uplot/',
  '/vendor/socket.io/': 'vendor/socket.io/',
};

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/** web/ of the package, from dist/src/monitor/ or src/monitor/. */
function defaultWebDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../..', '../..']) {
    const dir = resolve(here, up, 'web');
    if (existsSync(join(dir, 'monitor.html'))) return dir;
  }
  return resolve(here, '../../../web');
}

/** The directory of a dependency's file, resolved as Node would. */
function dirOf(specifier: string): string {
  return dirname(createRequire(import.meta.url).resolve(specifier));
}

/**
 * Mounts GET /monitor.html, /assets/*, /vendor/uplot/* and /vendor/socket.io/*. An explicit
 * `webDir` (tests) or a run from dist/ serves files from disk; the executable serves its copies.
 */
export function mountWebAssets(app: Express, webDir?: string): void {
  if (webDir === undefined && isStandalone()) {
    app.get('/monitor.html', (_req, res) => sendEmbedded(res, 'web/monitor.html'));
    app.use((req, res, next) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') return next();
      const prefix = Object.keys(EMBEDDED_WEB_PREFIXES).find((p) => req.path.startsWith(p));
      if (!prefix) return next();
      const rest = req.path.slice(prefix.length);
      if (!rest || rest.split('/').some((part) => part === '..' || part === '')) return void res.status(404).end();
      sendEmbedded(res, `${EMBEDDED_WEB_PREFIXES[prefix]}${rest}`);
    });
    return;
  }
  const dir = webDir ?? defaultWebDir();
  app.get('/monitor.html', (_req, res) => res.sendFile(join(dir, 'monitor.html')));
  app.use('/assets', express.static(join(dir, 'assets'), { index: false, fallthrough: false, redirect: false }));
  app.use('/vendor/uplot', express.static(dirOf('uplot/dist/uPlot.iife.min.js'), { index: false, fallthrough: false, redirect: false }));
  // socket.io's package exports hide client-dist/; its main file sits in dist/ beside it.
  app.use('/vendor/socket.io', express.static(join(dirOf('socket.io'), '..', 'client-dist'), { index: false, fallthrough: false, redirect: false }));
}

function sendEmbedded(res: express.Response, key: string): void {
  const body = embeddedAsset(key);
  if (!body) return void res.status(404).type('text/plain').send('not found\n');
  res.type(TYPES[extname(key)] ?? 'application/octet-stream').send(body);
}
