/** Column helpers shared by every table of the schema. */
import { timestamp } from "drizzle-orm/pg-core";

/** A `timestamptz` column read and written as a JS Date. */
export const ts = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });
