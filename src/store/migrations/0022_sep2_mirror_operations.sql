-- Operator control of the 2030.5 metering mirror (docs/sep2.md, "Metering mirror").
--
-- post_rate: the postRate (seconds) the operator set on one MirrorUsagePoint; NULL serves
-- the deployment's sep2.post_rate_seconds. ADD COLUMN with a NULL default is the same
-- statement on SQLite and PostgreSQL and leaves existing rows on the deployment default.
ALTER TABLE sep2_mirror_usage_points ADD COLUMN post_rate BIGINT;

-- mRIDs are looked up across clients when a usage point or MirrorMeterReading is created,
-- so that one client cannot claim an mRID another client already uses.
CREATE INDEX sep2_mirror_usage_points_mrid ON sep2_mirror_usage_points(mrid);
CREATE INDEX sep2_mirror_meter_readings_mrid ON sep2_mirror_meter_readings(mrid);
