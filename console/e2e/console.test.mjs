// The console end to end in a real Chromium (Debian's, driven by playwright-core), against a
// running `flotilla server` with the embedded runtime. Started by the Rust test
// crates/flotilla/tests/console.rs, which prepares the server and passes:
//   FLOTILLA_URL, FLOTILLA_PASSWORD (admin), FLOTILLA_PROJECT (with environment `test` on the
//   local cluster), FLOTILLA_IMAGE (busybox with httpd and /www), SCREENSHOT_DIR.
// The steps share one page and run in order: each starts where the previous one left off.

import { test as nodeTest, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const url = process.env.FLOTILLA_URL;
const password = process.env.FLOTILLA_PASSWORD;
const project = process.env.FLOTILLA_PROJECT;
const image = process.env.FLOTILLA_IMAGE;
const shots = process.env.SCREENSHOT_DIR;
const viewer = process.env.FLOTILLA_VIEWER;
const viewerPassword = process.env.FLOTILLA_VIEWER_PASSWORD;
const app = "shop";

let browser;
let page;

// A step that fails leaves a screenshot of where it stood (failed-<step>.png).
function test(name, body) {
  nodeTest(name, async () => {
    try {
      await body();
    } catch (error) {
      await shot(`failed-${name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60)}`).catch(() => undefined);
      throw error;
    }
  });
}

async function shot(name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

before(async () => {
  assert.ok(url && password && project && image, "FLOTILLA_URL, FLOTILLA_PASSWORD, FLOTILLA_PROJECT and FLOTILLA_IMAGE are set");
  if (shots) mkdirSync(shots, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, locale: "en-US" });
  page = await context.newPage();
  page.setDefaultTimeout(15_000);
});

after(async () => {
  await browser?.close();
});

test("a wrong password is refused, the right one logs in", async () => {
  await page.goto(url);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("not the password");
  await page.getByTestId("login-submit").click();
  await page.getByRole("alert").waitFor();
  assert.match(await page.getByRole("alert").innerText(), /Login failed/);
  await shot("login");
  await page.getByLabel("Password").fill(password);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("current-user").waitFor();
  assert.equal(await page.getByTestId("current-user").innerText(), "admin");
});

test("the clusters page shows the local cluster ready", async () => {
  await page.getByTestId("nav-clusters").click();
  const phase = page.getByTestId("cluster-phase-local");
  await phase.filter({ hasText: "Ready" }).waitFor({ timeout: 60_000 });
  await shot("clusters");
});

test("an application is created from the form; a missing image is refused at its field", async () => {
  await page.goto(`${url}/projects/${project}/applications/new?env=test`);
  await page.getByTestId("app-name-input").fill(app);
  await page.getByTestId("create-submit").click();
  const imageField = page.locator("label.field.invalid", { has: page.locator('input[name="components.0.image"]') });
  await imageField.waitFor();
  assert.match(await imageField.locator(".field-error").innerText(), /./, "the image field says what is wrong");
  await page.locator('input[name="components.0.image"]').fill(image);
  await page.locator('input[name="components.0.replicas"]').fill("2");
  await page.locator('textarea[name="components.0.command"]').fill("/bin/sh\n-c\necho serving; exec /bin/httpd -f -v -p 8080 -h /www");
  await page.locator('input[name="components.0.ports"]').fill("http:8080");
  await page.locator('textarea[name="components.0.env"]').fill("GREETING=hello");
  await page.locator('input[name="components.0.readiness"]').fill("/");
  await shot("create-application");
  await page.getByTestId("create-submit").click();
  await page.getByTestId("app-name").filter({ hasText: app }).waitFor();
});

test("the application becomes ready with two instances", async () => {
  await page.getByTestId("app-phase").filter({ hasText: "Ready" }).waitFor({ timeout: 90_000 });
  await page.getByTestId("ready-web").filter({ hasText: "2" }).waitFor();
  await shot("application");
});

test("the list finds it by search and environment", async () => {
  await page.getByTestId("nav-applications").click();
  await page.getByTestId("search").fill("sho");
  await page.getByTestId(`app-row-${app}`).waitFor();
  await page.getByTestId("search").fill("nothing-like-it");
  await page.getByTestId(`app-row-${app}`).waitFor({ state: "detached" });
  await page.getByTestId("search").fill("");
  await page.getByTestId(`app-row-${app}`).waitFor();
  await shot("applications");
  await page.getByTestId(`app-row-${app}`).getByRole("link").click();
});

test("scaling to three makes three ready instances", async () => {
  await page.getByTestId("replicas-web").fill("3");
  await page.getByTestId("scale-web").click();
  await page.getByTestId("app-revision").filter({ hasText: "2" }).waitFor();
  await page.getByTestId("ready-web").filter({ hasText: "3" }).waitFor({ timeout: 90_000 });
});

test("the logs show the instances' lines, searchable", async () => {
  await page.getByTestId("tab-logs").click();
  const lines = page.getByTestId("log-lines");
  await lines.filter({ hasText: "serving" }).waitFor({ timeout: 30_000 });
  await page.getByTestId("log-search").fill("serving");
  const text = await lines.innerText();
  assert.ok(text.split("\n").every((line) => !line.trim() || line.includes("serving")), text);
  await shot("logs");
  await page.getByTestId("tab-metrics").click();
  const memory = page.locator('[data-testid^="memory-"]').first();
  await memory.filter({ hasText: /\d+(\.\d+)? (KiB|MiB)/ }).waitFor({ timeout: 20_000 });
  await page.locator('[data-testid^="cpu-"]').first().filter({ hasText: /\d\.\d{3}/ }).waitFor({ timeout: 20_000 });
  await shot("metrics");
  await page.getByTestId("tab-overview").click();
});

test("rolling back to revision 1 goes back to two instances", async () => {
  await page.getByTestId("rollback-1").click();
  await page.getByTestId("confirm").click();
  await page.getByTestId("app-revision").filter({ hasText: "3" }).waitFor();
  await page.getByTestId("ready-web").filter({ hasText: /^2$/ }).waitFor({ timeout: 90_000 });
  await page.getByTestId("revision-3").filter({ hasText: "rollback to revision 1" }).waitFor();
});

test("the audit record of the rollback shows its diff", async () => {
  await page.getByTestId("nav-audit").click();
  await page.getByTestId("audit-kind").fill("Application");
  await page.getByTestId("audit-name").fill(app);
  await page.getByTestId("audit-action").fill("update");
  await page.getByTestId("audit-search").click();
  const newest = page.getByTestId("audit-records").locator("tbody tr").first();
  await newest.filter({ hasText: "update" }).waitFor();
  await newest.click();
  const diff = page.getByTestId("audit-diff");
  const row = diff.locator("tr", { hasText: "spec.components[0].replicas" });
  await row.waitFor();
  assert.deepEqual(await row.locator("td").allInnerTexts(), ["spec.components[0].replicas", "3", "2"]);
  await diff.locator("tr", { hasText: "metadata.annotations" }).filter({ hasText: "rollback to revision 1" }).waitFor();
  const exported = await page.evaluate(async (href) => {
    const response = await fetch(href);
    return { type: response.headers.get("content-type"), text: await response.text() };
  }, await page.getByTestId("audit-export").getAttribute("href"));
  assert.match(exported.type, /text\/csv/);
  assert.match(exported.text, /^seq,time,user/);
  assert.ok(exported.text.split("\n").some((line) => line.includes(",update,Application,") && line.includes(`,${app},`)), exported.text);
  await shot("audit");
});

test("a restart replaces every instance, rolling, and ends ready", async () => {
  await page.goto(`${url}/projects/${project}/applications/${app}`);
  await page.getByTestId("app-phase").filter({ hasText: "Ready" }).waitFor();
  await page.getByTestId("instances").locator("tbody tr").nth(1).waitFor();
  const before = await page.getByTestId("instances").locator("tbody tr td:first-child").allInnerTexts();
  assert.equal(before.length, 2, `two instances before: ${before}`);
  await page.getByTestId("restart").click();
  await page.getByTestId("confirm").click();
  await page.getByTestId("app-revision").filter({ hasText: "4" }).waitFor();
  await page.waitForFunction(
    (old) => {
      const names = [...document.querySelectorAll('[data-testid="instances"] tbody tr td:first-child')].map((td) => td.textContent);
      const phase = document.querySelector('[data-testid="app-phase"]')?.textContent;
      return names.length === old.length && names.every((name) => !old.includes(name)) && phase === "Ready";
    },
    before,
    { timeout: 90_000 },
  );
});

test("the delivery center lists the repository and its versions", async () => {
  await page.getByTestId("nav-repositories").click();
  await page.getByTestId(`repository-${project}/sql/release`).click();
  const versions = page.getByTestId("versions");
  await versions.locator("tr", { hasText: "1.0.0" }).filter({ hasText: "admin" }).waitFor();
  await shot("repositories");
});

test("an API token is shown once, listed, and revoked", async () => {
  await page.getByTestId("nav-access").click();
  const tokens = page.getByTestId("tokens");
  await page.getByTestId("tokens").locator("tbody tr").first().waitFor();
  await page.getByTestId("token-name").fill("console-e2e");
  await page.getByTestId("token-create").click();
  const shown = await page.getByTestId("new-token").locator("code").innerText();
  assert.match(shown, /^\S{20,}$/, "the token itself");
  const row = tokens.locator("tr", { hasText: "console-e2e" });
  await row.waitFor();
  const asToken = (token) =>
    page.evaluate(async (token) => (await fetch("/api/v1/auth/whoami", { credentials: "omit", headers: { Authorization: `Bearer ${token}` } })).status, token);
  assert.equal(await asToken(shown), 200, "the token works on its own");
  await shot("access");
  await row.getByRole("button", { name: "Revoke" }).click();
  await row.filter({ hasText: "revoked" }).waitFor();
  assert.equal(await asToken(shown), 401, "a revoked token is refused");
});

test("a template is instantiated through the form its parameter schema makes", async () => {
  await page.getByTestId("nav-templates").click();
  await page.getByTestId("instantiate-web-template").click();
  const form = page.getByTestId("instantiate-form");
  await page.getByTestId("instance-name").fill("from-template");
  await form.locator('input[name="values.image"]').fill(image);
  await form.locator('input[name="values.replicas"]').fill("0");
  assert.equal(await form.locator('select[name="values.greeting"]').inputValue(), "hello", "the default is chosen");
  await form.locator('select[name="values.greeting"]').selectOption("bonjour");
  await page.getByTestId("instantiate-submit").click();
  const replicas = page.locator("label.field.invalid", { has: page.locator('input[name="values.replicas"]') });
  await replicas.waitFor();
  await shot("template");
  await form.locator('input[name="values.replicas"]').fill("1");
  await page.getByTestId("instantiate-submit").click();
  await page.getByTestId("app-name").filter({ hasText: "from-template" }).waitFor();
  await page.getByTestId("app-phase").filter({ hasText: "Ready" }).waitFor({ timeout: 90_000 });
  await page.getByTestId("ready-web").filter({ hasText: /^1$/ }).waitFor();
});

test("deleting asks for the name, then the application is gone", async () => {
  await page.getByTestId("delete").click();
  const confirm = page.getByTestId("confirm");
  assert.equal(await confirm.isDisabled(), true, "not before the name is typed");
  await page.getByTestId("confirm-text").fill("from-template");
  await confirm.click();
  await page.getByTestId(`app-row-${app}`).waitFor();
  await page.getByTestId("app-row-from-template").waitFor({ state: "detached", timeout: 30_000 });
});

test("YAML refused by the server shows each error at its line", async () => {
  await page.goto(`${url}/projects/${project}/applications/new?env=test`);
  await page.getByTestId("app-name-input").fill("yaml-app");
  await page.getByTestId("mode-yaml").click();
  const yaml = page.getByTestId("yaml");
  const text = await yaml.inputValue();
  const withField = text.replace(/^(\s*)image: .*$/m, "$1image: \"\"\n$1colour: blue");
  await yaml.fill(withField);
  await page.getByTestId("create-submit").click();
  const errors = page.getByTestId("field-errors");
  await errors.waitFor();
  const lines = withField.split("\n");
  const colourLine = lines.findIndex((line) => line.trim().startsWith("colour:")) + 1;
  const listed = await errors.innerText();
  assert.match(listed, /spec\.components\[0\]\.colour/, listed);
  assert.ok(listed.includes(`line ${colourLine}`), `the unknown field at line ${colourLine}: ${listed}`);
  await shot("create-yaml");
});

test("the language switches to Simplified Chinese and back", async () => {
  await page.goto(`${url}/projects/${project}/applications/${app}`);
  await page.getByTestId("language-switcher").selectOption("zh-CN");
  await page.getByTestId("nav-applications").filter({ hasText: "应用" }).waitFor();
  await page.getByTestId("app-phase").filter({ hasText: "就绪" }).waitFor();
  await page.getByTestId("nav-templates").filter({ hasText: "应用模板" }).waitFor();
  await shot("application-zh-CN");
  await page.getByTestId("language-switcher").selectOption("en");
  await page.getByTestId("nav-applications").filter({ hasText: "Applications" }).waitFor();
});

test("logging out ends the session", async () => {
  await page.getByTestId("logout").click();
  await page.getByTestId("login-submit").waitFor();
  const answer = await page.evaluate(async () => (await fetch("/api/v1/auth/whoami")).status);
  assert.equal(answer, 401);
});

test("a session that ends on the server brings back the login page, saying so", async () => {
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("current-user").waitFor();
  await page.goto(`${url}/projects/${project}/applications/${app}`);
  await page.getByTestId("app-phase").waitFor();
  // The session cookie is gone (expired, or revoked): the page's next poll answers 401.
  await page.context().clearCookies();
  await page.getByText("Your session expired. Please log in again.").waitFor({ timeout: 10_000 });
  await page.getByTestId("login-submit").waitFor();
});

test("a viewer sees the application and is offered nothing that changes it", async () => {
  assert.ok(viewer && viewerPassword, "FLOTILLA_VIEWER and FLOTILLA_VIEWER_PASSWORD are set");
  await page.getByLabel("Username").fill(viewer);
  await page.getByLabel("Password").fill(viewerPassword);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("current-user").filter({ hasText: viewer }).waitFor();
  await page.goto(`${url}/projects/${project}/applications`);
  await page.getByTestId(`app-row-${app}`).waitFor();
  assert.equal(await page.getByTestId("new-application").count(), 0, "no New application");
  await page.getByTestId(`app-row-${app}`).getByRole("link").click();
  await page.getByTestId("app-phase").filter({ hasText: "Ready" }).waitFor();
  await page.getByTestId("revisions").locator("tbody tr").first().waitFor();
  await page.locator('[data-testid="actions"][data-ready="true"]').waitFor({ state: "attached" });
  for (const action of ["scale-web", "restart", "delete", "rollback-1"]) {
    assert.equal(await page.getByTestId(action).count(), 0, `no ${action}`);
  }
  // The API refuses it anyway.
  const status = await page.evaluate(async (path) => {
    const who = await (await fetch("/api/v1/auth/whoami")).json();
    const response = await fetch(path, { method: "DELETE", headers: { "X-CSRF-Token": who.csrfToken } });
    return response.status;
  }, `/api/v1/projects/${project}/applications/${app}`);
  assert.equal(status, 403);
  await page.getByTestId("logout").click();
  await page.getByTestId("login-submit").waitFor();
});
