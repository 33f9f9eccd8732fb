import type { Metadata } from "next";
import type { ReactNode } from "react";
import "./globals.css";
import NavLinks from "@/components/NavLinks";
import { configOrLog } from "@/lib/admin-config";
import { CONFIG_ERROR } from "@/lib/proxy";
import { currentSession } from "@/lib/request";

export const dynamic = "force-dynamic";
export const metadata: Metadata = { title: "ztr console", robots: { index: false, follow: false } };

export default async function RootLayout({ children }: { children: ReactNode }) {
  const configured = configOrLog() !== null;
  const sess = await currentSession();
  return (
    <html lang="en">
      <head>{sess !== null && <meta name="ztr-csrf" content={sess.csrf} />}</head>
      <body>
        <a className="skip" href="#main">
          Skip to content
        </a>
        <header className="top">
          <span className="brand">ztr console</span>
          {sess !== null && (
            <nav aria-label="Console">
              <NavLinks />
              <form method="post" action="/api/session/logout" className="logout">
                <input type="hidden" name="csrf" value={sess.csrf} />
                <button type="submit">Log out</button>
              </form>
            </nav>
          )}
        </header>
        {!configured && (
          <div className="banner" role="alert" data-testid="config-banner">
            <strong>{CONFIG_ERROR}</strong>
            <span>
              {" "}
              — the console cannot reach the admin API. Set both in its environment (for the service:
              /etc/ztr/ui.conf) and restart it.
            </span>
          </div>
        )}
        <main id="main">{children}</main>
      </body>
    </html>
  );
}
