import { statusText } from "@/lib/client";

export default function ErrorPanel({ status, text, what }: { status: number; text: string; what: string }) {
  return (
    <div className="error-panel" role="alert" data-testid="error-panel">
      <strong>
        {status === 0 ? "No answer" : statusText(status)}: cannot fetch {what}
      </strong>
      <p>{text}</p>
    </div>
  );
}
