// Users, their role bindings, and the caller's own API tokens. Who may see or change what is
// the server's decision: the lists show what it answers, the forms what it allows.

import { useState, type FormEvent } from "react";
import { collection, del, item, post, put, type ApiObject, type Page } from "../api";
import { ErrorNote } from "../components/Common";
import { age } from "../format";
import { useCan, useGet } from "../hooks";
import { useI18n } from "../i18n";
import { useSession } from "../session";

type User = ApiObject<{ displayName?: string; email?: string; disabled?: boolean }>;
type Binding = ApiObject<{ user: string; role: string; workspace?: string; project?: string; environments?: string[] }>;

const ROLES = ["viewer", "developer", "maintainer", "owner", "workspace-admin", "auditor", "admin"];

export function Access() {
  const { t } = useI18n();
  const users = useGet<Page<User>>(collection("users", undefined, { limit: 500 }));
  const bindings = useGet<Page<Binding>>(collection("rolebindings", undefined, { limit: 500 }));
  const canCreateUser = useCan("create", "User");
  // Granting is decided per role granted (the server's can_grant): offered to admins and to
  // those who may grant some role (owners, maintainers, workspace admins); the server decides.
  const { who } = useSession();
  const canGrant =
    useCan("create", "RoleBinding") || !!who?.grants.some((g) => ["owner", "maintainer", "workspace-admin"].includes(g.role));
  const [user, setUser] = useState({ name: "", displayName: "", password: "" });
  const [binding, setBinding] = useState({ user: "", role: "developer", project: "", environments: "" });
  const [error, setError] = useState<unknown>(null);

  const addUser = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      await post(collection("users"), {
        apiVersion: "flotilla.io/v1",
        kind: "User",
        metadata: { name: user.name },
        spec: user.displayName ? { displayName: user.displayName } : {},
      });
      if (user.password) await put(`/api/v1/users/${encodeURIComponent(user.name)}/password`, { newPassword: user.password });
      setUser({ name: "", displayName: "", password: "" });
      users.reload();
    } catch (e) {
      setError(e);
    }
  };

  const addBinding = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    const spec: Record<string, unknown> = { user: binding.user, role: binding.role };
    if (binding.project) spec.project = binding.project;
    const environments = binding.environments.split(",").map((e) => e.trim()).filter(Boolean);
    if (environments.length) spec.environments = environments;
    const name = [binding.user, binding.role, binding.project].filter(Boolean).join("-").toLowerCase().replace(/[^a-z0-9-]/g, "-");
    try {
      await post(collection("rolebindings"), { apiVersion: "flotilla.io/v1", kind: "RoleBinding", metadata: { name }, spec });
      bindings.reload();
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section>
      <h1>{t("access.title")}</h1>
      <ErrorNote error={error ?? users.error ?? bindings.error} />
      <h2>{t("access.users")}</h2>
      <table data-testid="users">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("access.displayName")}</th>
            <th>{t("common.status")}</th>
            <th>{t("common.age")}</th>
          </tr>
        </thead>
        <tbody>
          {users.data?.items.map((u) => (
            <tr key={u.metadata.name}>
              <td>{u.metadata.name}</td>
              <td>{u.spec.displayName ?? ""}</td>
              <td>{u.spec.disabled ? t("access.disabled") : t("access.active")}</td>
              <td>{age(u.metadata.creationTimestamp)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canCreateUser && (
        <form className="inline-form" onSubmit={addUser}>
          <input placeholder={t("common.name")} value={user.name} onChange={(e) => setUser({ ...user, name: e.target.value })} />
          <input placeholder={t("access.displayName")} value={user.displayName} onChange={(e) => setUser({ ...user, displayName: e.target.value })} />
          <input type="password" placeholder={t("login.password")} value={user.password} onChange={(e) => setUser({ ...user, password: e.target.value })} />
          <button type="submit">{t("access.addUser")}</button>
        </form>
      )}
      <h2>{t("access.bindings")}</h2>
      <table data-testid="bindings">
        <thead>
          <tr>
            <th>{t("access.user")}</th>
            <th>{t("access.role")}</th>
            <th>{t("access.scope")}</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {bindings.data?.items.map((b) => (
            <tr key={b.metadata.name}>
              <td>{b.spec.user}</td>
              <td>{b.spec.role}</td>
              <td>
                {b.spec.project ? `${t("scope.project")} ${b.spec.project}` : b.spec.workspace ? `workspace ${b.spec.workspace}` : t("access.platform")}
                {b.spec.environments ? ` (${b.spec.environments.join(", ")})` : ""}
              </td>
              <td>
                {canGrant && (
                <button
                  type="button"
                  className="danger"
                  onClick={() =>
                    void del(item("rolebindings", b.metadata.name))
                      .then(bindings.reload)
                      .catch(setError)
                  }
                >
                  {t("common.delete")}
                </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {canGrant && (
      <form className="inline-form" onSubmit={addBinding}>
        <input placeholder={t("access.user")} value={binding.user} onChange={(e) => setBinding({ ...binding, user: e.target.value })} />
        <select value={binding.role} onChange={(e) => setBinding({ ...binding, role: e.target.value })}>
          {ROLES.map((role) => (
            <option key={role} value={role}>
              {role}
            </option>
          ))}
        </select>
        <input placeholder={t("scope.project")} value={binding.project} onChange={(e) => setBinding({ ...binding, project: e.target.value })} />
        <input placeholder={t("access.environments")} value={binding.environments} onChange={(e) => setBinding({ ...binding, environments: e.target.value })} />
        <button type="submit">{t("access.grant")}</button>
      </form>
      )}
      <Tokens />
    </section>
  );
}

interface Token {
  id: string;
  name: string;
  createdAt: string;
  expiresAt: string;
  revokedAt?: string;
}

function Tokens() {
  const { t } = useI18n();
  const { who } = useSession();
  const tokens = useGet<{ items: Token[] }>("/api/v1/tokens");
  const [name, setName] = useState("");
  const [days, setDays] = useState("30");
  const [shown, setShown] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const create = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      const created = await post<{ token: string }>("/api/v1/tokens", { name, ttlDays: Number(days) });
      setShown(created.token);
      setName("");
      tokens.reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <>
      <h2>{t("tokens.title", { user: who?.user ?? "" })}</h2>
      <ErrorNote error={error ?? tokens.error} />
      {shown && (
        <p className="warn" data-testid="new-token">
          {t("tokens.once")} <code>{shown}</code>
        </p>
      )}
      <table data-testid="tokens">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("tokens.created")}</th>
            <th>{t("tokens.expires")}</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {tokens.data?.items.map((token) => (
            <tr key={token.id}>
              <td>{token.name}</td>
              <td>{age(token.createdAt)}</td>
              <td>{new Date(token.expiresAt).toLocaleDateString()}</td>
              <td>
                {token.revokedAt ? (
                  t("tokens.revoked")
                ) : (
                  <button type="button" onClick={() => void del(`/api/v1/tokens/${encodeURIComponent(token.id)}`).then(tokens.reload).catch(setError)}>
                    {t("tokens.revoke")}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form className="inline-form" onSubmit={create}>
        <input placeholder={t("common.name")} value={name} onChange={(e) => setName(e.target.value)} data-testid="token-name" />
        <input type="number" min={1} value={days} onChange={(e) => setDays(e.target.value)} aria-label={t("tokens.days")} />
        <button type="submit" data-testid="token-create">
          {t("tokens.create")}
        </button>
      </form>
    </>
  );
}
