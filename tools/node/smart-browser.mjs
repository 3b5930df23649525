// Drives Debian's Chromium with playwright-core through the SMART app, for tests/e2e of the app
// (tests/e2e/test_smart_browser.py). Usage: node smart-browser.mjs plan.json  -> JSON report on stdout.
// plan: {chromium, steps: [{goto: url} | {reload: true, waitMs?: n}], screenshot?: path, axe?: bool}
// Report per step: final URL, HTTP status of the document, title, visible text, section ids; plus
// every request the page made (to check origins), console errors (CSP violations show there) and
// the axe-core results (serious/critical violations) run in the same page after the last step.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await chromium.launch({
  executablePath: plan.chromium || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-features=Translate,MediaRouter'],
});
const report = { steps: [], requests: [], console: [], axe: null };
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on('request', (r) => report.requests.push({ method: r.method(), url: r.url() }));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') report.console.push(m.text()); });
  for (const step of plan.steps) {
    if (step.waitMs) await page.waitForTimeout(step.waitMs);
    const resp = step.goto ? await page.goto(step.goto, { waitUntil: 'load' }) : await page.reload({ waitUntil: 'load' });
    report.steps.push({
      url: page.url(),
      status: resp ? resp.status() : null,
      title: await page.title(),
      text: await page.evaluate(() => document.body.innerText),
      sections: await page.evaluate(() => [...document.querySelectorAll('section[id]')].map((s) => s.id)),
      svgs: await page.evaluate(() => [...document.querySelectorAll('svg[role=img]')].map((s) => ({
        label: s.getAttribute('aria-labelledby'), title: s.querySelector('title')?.textContent || '',
        desc: s.querySelector('desc')?.textContent || '' }))),
      focus: await page.evaluate(() => document.querySelector('section.focus')?.id || null),
    });
  }
  if (plan.screenshot) await page.screenshot({ path: plan.screenshot, fullPage: true });
  if (plan.axe) {
    // page.evaluate runs through the DevTools protocol, which the page's CSP does not govern; the
    // page itself still loads no script.
    await page.evaluate(readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8'));
    const r = await page.evaluate(async () => await globalThis.axe.run(document, { resultTypes: ['violations'] }));
    report.axe = r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
