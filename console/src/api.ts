// The REST API as the console uses it: same-origin requests with the session cookie, the
// CSRF token on every write, and errors as `ApiError` (status, code, message, and the
// field errors of a refused document).

export interface FieldError {
  path: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public fields: FieldError[] = [],
  ) {
    super(message);
  }
}

export interface Meta {
  name: string;
  project?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  updateTimestamp?: string;
}

export interface ApiObject<Spec = Record<string, unknown>, Status = Record<string, unknown>> {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  spec: Spec;
  status?: Status;
}

export interface Page<T> {
  items: T[];
  metadata: { continue?: string };
}

let csrfToken: string | undefined;
let onUnauthorized: (() => void) | undefined;

export function setCsrfToken(token: string | undefined) {
  csrfToken = token;
}

/// Called when a request answers 401 (the session expired or was revoked).
export function setUnauthorizedHandler(handler: () => void) {
  onUnauthorized = handler;
}

async function errorOf(response: Response): Promise<ApiError> {
  let body: { code?: string; message?: string; details?: unknown } = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status says it all.
  }
  const fields = Array.isArray(body.details) ? (body.details as FieldError[]) : [];
  return new ApiError(response.status, body.code ?? String(response.status), body.message ?? response.statusText, fields);
}

export async function request<T>(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let payload: BodyInit | undefined;
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (response.status === 401 && !path.endsWith("/auth/login")) onUnauthorized?.();
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("content-type") ?? "";
  return (type.includes("json") ? await response.json() : await response.text()) as T;
}

export const get = <T>(path: string) => request<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => request<T>("POST", path, body);
export const put = <T>(path: string, body: unknown) => request<T>("PUT", path, body);
export const del = <T>(path: string) => request<T>("DELETE", path);

/// `/api/v1/projects/{project}/{plural}` or `/api/v1/{plural}`, with a query.
export function collection(plural: string, project?: string, query: Record<string, string | number | undefined> = {}) {
  const base = project ? `/api/v1/projects/${encodeURIComponent(project)}/${plural}` : `/api/v1/${plural}`;
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `${base}?${text}` : base;
}

export function item(plural: string, name: string, project?: string) {
  return `${collection(plural, project)}/${encodeURIComponent(name)}`;
}

/// The whole list (every page): for the short lists of a switcher, never for applications.
export async function listAll<T>(plural: string, project?: string): Promise<T[]> {
  const items: T[] = [];
  let next: string | undefined;
  do {
    const page = await get<Page<T>>(collection(plural, project, { limit: 500, continue: next }));
    items.push(...page.items);
    next = page.metadata.continue;
  } while (next);
  return items;
}

/// Reads an object, lets `change` edit it, and writes it back at the version read (a
/// concurrent change answers 409 rather than being overwritten).
export async function update<T extends { metadata: Meta; status?: unknown }>(plural: string, name: string, project: string | undefined, change: (object: T) => void): Promise<T> {
  const object = await get<T>(item(plural, name, project));
  change(object);
  delete object.status;
  return put<T>(item(plural, name, project), object);
}
