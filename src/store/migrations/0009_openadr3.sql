-- OpenADR 3 VTN objects (programs, events, reports, subscriptions, vens, resources).
-- Each object is kept whole as the JSON the API serves; the columns beside it are the ones
-- queries filter on. unique_key carries the names the specification wants unique
-- ("PROGRAM:<programName>", "VEN:<venName>", "RESOURCE:<venID>:<resourceName>"), NULL for
-- the others, so the database refuses duplicates even between nodes.
CREATE TABLE oadr3_objects (
    id          TEXT PRIMARY KEY,
    object_type TEXT NOT NULL,
    unique_key  TEXT UNIQUE,
    program_id  TEXT,
    event_id    TEXT,
    client_name TEXT,
    client_id   TEXT,
    body        TEXT NOT NULL
);
CREATE INDEX oadr3_objects_type ON oadr3_objects (object_type, id);
CREATE INDEX oadr3_objects_client ON oadr3_objects (object_type, client_id, id);
CREATE INDEX oadr3_objects_event ON oadr3_objects (object_type, event_id, id);
