CREATE TABLE "connect_token_nonces" (
	"nonce" text PRIMARY KEY NOT NULL,
	"device_id" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "connect_token_nonces_expires_idx" ON "connect_token_nonces" USING btree ("expires_at");