// The console's pages. Anyone not logged in sees the login page; everything else is inside
// the shell (navigation, project and environment switcher, language, user).

import { Navigate, Route, Routes } from "react-router";
import { useSession } from "./session";
import { useI18n } from "./i18n";
import { Shell } from "./components/Shell";
import { Login } from "./pages/Login";
import { Clusters } from "./pages/Clusters";
import { ClusterDetail } from "./pages/ClusterDetail";
import { Applications } from "./pages/Applications";
import { ApplicationDetail } from "./pages/ApplicationDetail";
import { ApplicationCreate } from "./pages/ApplicationCreate";
import { Home } from "./pages/Home";
import { Audit } from "./pages/Audit";
import { Templates } from "./pages/Templates";
import { Repositories } from "./pages/Repositories";
import { Access } from "./pages/Access";

export function App() {
  const { who } = useSession();
  const { t } = useI18n();
  if (who === undefined) return <p className="loading">{t("common.loading")}</p>;
  if (who === null) return <Login />;
  return (
    <Shell>
      <Routes>
        <Route path="/" element={<Home />} />
        <Route path="/clusters" element={<Clusters />} />
        <Route path="/clusters/:name" element={<ClusterDetail />} />
        <Route path="/projects/:project/applications" element={<Applications />} />
        <Route path="/projects/:project/applications/new" element={<ApplicationCreate />} />
        <Route path="/projects/:project/applications/:name" element={<ApplicationDetail />} />
        <Route path="/audit" element={<Audit />} />
        <Route path="/access" element={<Access />} />
        <Route path="/projects/:project/templates" element={<Templates />} />
        <Route path="/projects/:project/repositories" element={<Repositories />} />
        <Route path="*" element={<Navigate to="/" replace />} />
      </Routes>
    </Shell>
  );
}
