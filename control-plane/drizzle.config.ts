import { defineConfig } from "drizzle-kit";

// One PostgreSQL-dialect schema serves PGlite and PostgreSQL alike; migrations are committed and applied at open.
export default defineConfig({
  dialect: "postgresql",
  schema: "./control-plane/src/db/schema/index.ts",
  out: "./control-plane/drizzle",
});
