import { defineConfig } from "vitest/config";

export default defineConfig({
  // Tests run the TypeScript sources: package.json "imports" (#hash…) point at them under this condition.
  // The rest are Vite's default server conditions, which setting the list replaces.
  ssr: { resolve: { conditions: ["remotelog-source", "module", "node", "development|production"] } },
  test: {
    include: ["test/**/*.test.ts", "cli/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration and crash tests start real processes; two cores do not gain from more workers.
    maxWorkers: 2,
  },
});
