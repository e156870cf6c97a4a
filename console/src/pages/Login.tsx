import { useState, type FormEvent } from "react";
import { useI18n, type Language } from "../i18n";
import { useSession } from "../session";

export function Login() {
  const { t, language, setLanguage } = useI18n();
  const { login, expired } = useSession();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="login">
      <form onSubmit={submit} className="card">
        <h1>{t("login.title")}</h1>
        {expired && <p className="warn">{t("login.expired")}</p>}
        <label>
          {t("login.username")}
          <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} autoFocus />
        </label>
        <label>
          {t("login.password")}
          <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </label>
        {error && (
          <p className="error" role="alert">
            {t("login.failed", { message: error })}
          </p>
        )}
        <button type="submit" disabled={busy || !username || !password} data-testid="login-submit">
          {t("login.submit")}
        </button>
        <select aria-label={t("language")} value={language} onChange={(e) => setLanguage(e.target.value as Language)}>
          <option value="en">English</option>
          <option value="zh-CN">简体中文</option>
        </select>
      </form>
    </div>
  );
}
