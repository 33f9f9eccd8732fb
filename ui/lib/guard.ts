import { redirect } from "next/navigation";
import { currentSession } from "./request";

// Every console page but /login: no session, no page.
export async function requirePage(): Promise<void> {
  if ((await currentSession()) === null) redirect("/login");
}
