// Small pieces every page uses: an error note, a status badge, a keyset pager and a
// confirmation dialog.

import { useCallback, useState, type ReactNode } from "react";
import { ApiError } from "../api";
import { useI18n } from "../i18n";

export function ErrorNote({ error }: { error: unknown }) {
  const { t } = useI18n();
  if (!error) return null;
  const message = error instanceof Error ? error.message : String(error);
  return (
    <p className="error" role="alert">
      {t("common.error", { message })}
    </p>
  );
}

export function Badge({ tone, children, testId }: { tone: "ok" | "warn" | "bad" | "idle"; children: ReactNode; testId?: string }) {
  return (
    <span className={`badge badge-${tone}`} data-testid={testId}>
      {children}
    </span>
  );
}

/// Pages through a list by continue tokens: the tokens of earlier pages are kept so that
/// "previous" goes back without counting.
export function usePager() {
  const [tokens, setTokens] = useState<(string | undefined)[]>([undefined]);
  const current = tokens[tokens.length - 1];
  const next = useCallback((token: string) => setTokens((list) => [...list, token]), []);
  const previous = useCallback(() => setTokens((list) => (list.length > 1 ? list.slice(0, -1) : list)), []);
  const reset = useCallback(() => setTokens((list) => (list.length === 1 ? list : [undefined])), []);
  return { current, page: tokens.length, next, previous, reset };
}

export function Pager({ page, hasNext, onNext, onPrevious }: { page: number; hasNext: boolean; onNext: () => void; onPrevious: () => void }) {
  const { t } = useI18n();
  return (
    <div className="pager">
      <button type="button" disabled={page <= 1} onClick={onPrevious} data-testid="previous-page">
        {t("common.previous")}
      </button>
      <span>{page}</span>
      <button type="button" disabled={!hasNext} onClick={onNext} data-testid="next-page">
        {t("common.next")}
      </button>
    </div>
  );
}

/// A modal asking to confirm; with `typeToConfirm`, the user types that text first.
export function Confirm({
  message,
  typeToConfirm,
  onConfirm,
  onCancel,
}: {
  message: string;
  typeToConfirm?: string;
  onConfirm: () => Promise<void> | void;
  onCancel: () => void;
}) {
  const { t } = useI18n();
  const [typed, setTyped] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const ready = !typeToConfirm || typed === typeToConfirm;
  return (
    <div className="modal-backdrop">
      <div className="modal" role="dialog" aria-modal="true">
        <p>{message}</p>
        {typeToConfirm && <input data-testid="confirm-text" value={typed} onChange={(e) => setTyped(e.target.value)} autoFocus />}
        <ErrorNote error={error} />
        <div className="actions">
          <button type="button" onClick={onCancel}>
            {t("common.cancel")}
          </button>
          <button
            type="button"
            className="danger"
            data-testid="confirm"
            disabled={!ready || busy}
            onClick={async () => {
              setBusy(true);
              try {
                await onConfirm();
              } catch (e) {
                setError(e);
              } finally {
                setBusy(false);
              }
            }}
          >
            {t("common.confirm")}
          </button>
        </div>
      </div>
    </div>
  );
}

/// Field errors of a refused document, by path.
export function fieldErrors(error: unknown): Record<string, string> {
  const found: Record<string, string> = {};
  if (error instanceof ApiError) for (const field of error.fields) found[field.path] = field.message;
  return found;
}
