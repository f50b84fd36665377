ALTER TABLE "devices" ADD COLUMN "farm_findings" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "plane_events" ADD COLUMN "position" bigint;--> statement-breakpoint
CREATE UNIQUE INDEX "plane_events_position_idx" ON "plane_events" USING btree ("position");--> statement-breakpoint
-- HW-SSE-2: stream positions in commit order. Ids are taken at insert, so on PostgreSQL a transaction holding a
-- lower id can commit after one holding a higher id, and a reader walking ids would skip it. The position is taken
-- at commit instead (a deferred constraint trigger runs at COMMIT), under a transaction-scoped advisory lock that
-- PostgreSQL releases only after the transaction is visible: the next committer waits, so a position is never
-- visible before every lower one is.
CREATE SEQUENCE "plane_event_position_seq";--> statement-breakpoint
UPDATE "plane_events" SET "position" = "id" WHERE "position" IS NULL;--> statement-breakpoint
SELECT setval('plane_event_position_seq', GREATEST(COALESCE((SELECT MAX("position") FROM "plane_events"), 0), 1), EXISTS (SELECT 1 FROM "plane_events"));--> statement-breakpoint
CREATE FUNCTION "plane_events_assign_position"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(1213682512);
  UPDATE "plane_events" SET "position" = nextval('plane_event_position_seq') WHERE "id" = NEW."id" AND "position" IS NULL;
  RETURN NULL;
END
$$;--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "plane_events_position" AFTER INSERT ON "plane_events" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "plane_events_assign_position"();
