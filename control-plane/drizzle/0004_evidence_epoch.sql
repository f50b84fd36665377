DROP INDEX "evidence_device_seq_idx";--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "evidence_epoch" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "evidence_epoch_started_ts" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "sequence_reset_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "evidence" ADD COLUMN "epoch" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "evidence_device_epoch_seq_idx" ON "evidence" USING btree ("device_id","epoch","seq");