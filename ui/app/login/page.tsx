import { redirect } from "next/navigation";
import { currentSession } from "@/lib/request";

export const dynamic = "force-dynamic";

export default async function LoginPage({ searchParams }: { searchParams: Promise<{ error?: string }> }) {
  if ((await currentSession()) !== null) redirect("/");
  const { error } = await searchParams;
  return (
    <section className="login">
      <h1>Log in</h1>
      {error !== undefined && error !== "" && (
        <p className="error" role="alert" data-testid="login-error">
          {error.slice(0, 200)}
        </p>
      )}
      <form method="post" action="/api/session">
        <label htmlFor="password">Console password</label>
        <input id="password" name="password" type="password" autoComplete="current-password" required autoFocus />
        <button type="submit">Log in</button>
      </form>
    </section>
  );
}
