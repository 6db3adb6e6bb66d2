// Read by @sveltejs/vite-plugin-svelte and svelte-check: <script lang="ts"> in components.
import { vitePreprocess } from "@sveltejs/vite-plugin-svelte";

export default {
  preprocess: vitePreprocess(),
};
