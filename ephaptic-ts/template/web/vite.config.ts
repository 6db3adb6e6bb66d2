import { defineConfig } from "vite";

// `npm run dev` serves the page on http://localhost:5173 and forwards the WebSocket endpoint to
// the Rust server (`cargo run`, on 127.0.0.1:8000), so the page connects to "/_ephaptic" on its
// own origin, in development as in production.
export default defineConfig({
  server: {
    proxy: {
      "/_ephaptic": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
});
