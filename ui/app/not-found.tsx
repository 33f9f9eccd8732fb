export default function NotFound() {
  return (
    <section>
      <h1>404 Not Found</h1>
      <p role="alert">The console has no page at this address.</p>
      <p>
        <a href="/">Back to the nodes</a>
      </p>
    </section>
  );
}
