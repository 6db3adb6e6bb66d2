import { resolve } from "node:path";
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// One app, three pages: `/` (links to both), `/react/` and `/svelte/`, each the same demo in that
// framework's idioms. `npm run build` writes them to dist/, which the Rust server serves beside
// the WebSocket; `npm run dev` serves them on http://localhost:5173 and forwards the WebSocket to
// the server (`cargo run -p demo`, on 127.0.0.1:8000).
export default defineConfig({
  plugins: [react(), svelte()],
  resolve: {
    // The bindings are linked from the checkout (file: dependencies) and have their own
    // node_modules for their tests: make them use this app's React, TanStack and Svelte.
    dedupe: ["react", "react-dom", "@tanstack/react-query", "svelte", "@ephaptic/client"],
  },
  build: {
    rollupOptions: {
      input: {
        main: resolve(import.meta.dirname, "index.html"),
        react: resolve(import.meta.dirname, "react/index.html"),
        svelte: resolve(import.meta.dirname, "svelte/index.html"),
      },
    },
  },
  server: {
    proxy: {
      "/_ephaptic": { target: "ws://127.0.0.1:8000", ws: true },
    },
  },
});
