// Who is logged in: the session cookie is HttpOnly, so the console asks the server
// (`whoami`) and keeps the CSRF token it answers with. A 401 anywhere ends the session in
// the console too, and the login page says it expired.

import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { ApiError, get, post, setCsrfToken, setUnauthorizedHandler } from "./api";

export interface Grant {
  role: string;
  workspace?: string | null;
  project?: string | null;
  environments?: string[] | null;
}

export interface Who {
  user: string;
  auth: string;
  grants: Grant[];
  csrfToken?: string;
}

interface SessionState {
  who: Who | null | undefined; // undefined: not known yet
  expired: boolean;
  login: (username: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
}

const SessionContext = createContext<SessionState | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [who, setWho] = useState<Who | null | undefined>(undefined);
  const [expired, setExpired] = useState(false);

  const refresh = useCallback(async () => {
    try {
      const answer = await get<Who>("/api/v1/auth/whoami");
      setCsrfToken(answer.csrfToken);
      setWho(answer);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) setWho(null);
      else throw error;
    }
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => {
      setWho((current) => {
        if (current) setExpired(true);
        return null;
      });
    });
    refresh().catch(() => setWho(null));
  }, [refresh]);

  const login = useCallback(
    async (username: string, password: string) => {
      await post("/api/v1/auth/login", { username, password, mode: "session" });
      setExpired(false);
      await refresh();
    },
    [refresh],
  );

  const logout = useCallback(async () => {
    try {
      await post("/api/v1/auth/logout");
    } finally {
      setCsrfToken(undefined);
      setWho(null);
    }
  }, []);

  return <SessionContext.Provider value={{ who, expired, login, logout }}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionState {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionProvider");
  return session;
}

export function isAdmin(who: Who | null | undefined): boolean {
  return !!who?.grants.some((g) => g.role === "admin");
}
