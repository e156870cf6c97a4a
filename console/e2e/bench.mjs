// The console's speed, measured in Debian's Chromium (playwright-core) against a server that
// `flotilla-bench` (its `console` group) prepared with 2,000 applications in one project.
// Each figure comes with its floor from the same run: the bare HTTP requests the page needs,
// made from node. Prints one JSON object (milliseconds, every run) on its last line.
//
// Env: FLOTILLA_URL, FLOTILLA_PASSWORD (admin), FLOTILLA_PROJECT, APPLICATIONS (how many,
// named app-0000 on), RUNS (default 9).

import { chromium } from "playwright-core";

const url = process.env.FLOTILLA_URL;
const password = process.env.FLOTILLA_PASSWORD;
const project = process.env.FLOTILLA_PROJECT;
const runs = Number(process.env.RUNS ?? 9);
const applications = Number(process.env.APPLICATIONS ?? 2000);
if (!url || !password || !project) throw new Error("FLOTILLA_URL, FLOTILLA_PASSWORD and FLOTILLA_PROJECT are required");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const elapsed = (start) => performance.now() - start;
const result = { runs, firstPage: [], firstPageFloor: [], list: [], listFloor: [], search: [], searchFloor: [] };

// The floor of the first page: index.html, then its script and style, from node.
async function firstPageFloor() {
  const start = performance.now();
  const html = await (await fetch(url)).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  await Promise.all(assets.map(async (path) => (await fetch(url + path)).arrayBuffer()));
  return elapsed(start);
}

// 1. The first page, interactive, with a cold cache: a new browser context each time.
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const start = performance.now();
  await page.goto(url);
  await page.getByLabel("Username").waitFor();
  result.firstPage.push(elapsed(start));
  await context.close();
  result.firstPageFloor.push(await firstPageFloor());
}

// Logged in once; an API token for the floors.
const login = await fetch(`${url}/api/v1/auth/login`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ username: "admin", password, mode: "token", tokenName: "console-bench" }),
});
const { token } = await login.json();
const api = async (path) => {
  const start = performance.now();
  const response = await fetch(url + path, { headers: { Authorization: `Bearer ${token}` } });
  await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return elapsed(start);
};
const context = await browser.newContext();
const page = await context.newPage();
await page.goto(url);
await page.getByLabel("Username").fill("admin");
await page.getByLabel("Password").fill(password);
await page.getByTestId("login-submit").click();
await page.getByTestId("current-user").waitFor();
const rows = page.getByTestId("applications").locator("tbody tr");

// 2. The list of 2,000: from the navigation link to the first page of 50 rows shown.
for (let i = 0; i < runs; i++) {
  await page.getByTestId("nav-clusters").click();
  await page.getByTestId("clusters").waitFor();
  const start = performance.now();
  await page.getByTestId("nav-applications").click();
  await rows.nth(49).waitFor();
  result.list.push(elapsed(start));
  result.listFloor.push(await api(`/api/v1/projects/${project}/applications?limit=50`));
}

// 3. Searching the 2,000: from typing a name to its one row shown (the page waits 150 ms
//    for the typing to pause before it asks; the floor is the search request alone).
for (let i = 0; i < runs; i++) {
  const name = `app-${String((1000 + i * 97) % applications).padStart(4, "0")}`;
  const search = page.getByTestId("search");
  await search.fill("");
  await rows.nth(49).waitFor();
  const start = performance.now();
  await search.fill(name);
  await page.getByTestId(`app-row-${name}`).waitFor();
  await rows.nth(1).waitFor({ state: "detached" });
  result.search.push(elapsed(start));
  result.searchFloor.push(await api(`/api/v1/projects/${project}/applications?limit=50&q=${name}`));
}

await browser.close();
console.log(JSON.stringify(result));
