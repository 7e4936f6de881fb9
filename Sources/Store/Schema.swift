internal import GRDB

/// The store's migrations. A migration's name and body never change once shipped; a schema
/// change is a new migration appended at the end. Names are "vN-what".
///
/// The schema enforces itself: NOT NULL everywhere a value is required, CHECK on every enum
/// column (the allowed values are spelled out here, not derived from the Swift enums, so
/// that adding a Swift case cannot silently change a shipped migration), JSON columns are
/// checked with `json_valid`, and foreign keys are declared (GRDB turns enforcement on for
/// every connection).
enum Schema {
    static let migrationNames = ["v1-initial", "v2-liveness", "v3-callback-delivery"]

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-initial") { db in
            try db.execute(
                sql: """
                    CREATE TABLE contact (
                        id TEXT NOT NULL PRIMARY KEY CHECK (length(id) > 0),
                        displayName TEXT NOT NULL CHECK (length(displayName) > 0),
                        sipURI TEXT NOT NULL UNIQUE,
                        -- user@host form of sipURI (SIPAddressKey), what lookups match on
                        uriKey TEXT NOT NULL UNIQUE,
                        role TEXT NOT NULL
                            CHECK (role IN ('centralePost', 'family', 'professional')),
                        autoAnswerSeconds INTEGER
                            CHECK (autoAnswerSeconds IS NULL OR autoAnswerSeconds BETWEEN 0 AND 600),
                        photoRef TEXT,
                        sortOrder INTEGER NOT NULL
                    );
                    CREATE INDEX contact_sortOrder ON contact(sortOrder, displayName);

                    CREATE TABLE callRecord (
                        id TEXT NOT NULL PRIMARY KEY CHECK (length(id) > 0),
                        direction TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
                        peerURI TEXT NOT NULL,
                        peerName TEXT,
                        startedAt DATETIME NOT NULL,
                        answeredAt DATETIME,
                        endedAt DATETIME,
                        outcome TEXT CHECK (outcome IS NULL OR outcome IN (
                            'answered', 'unanswered', 'rejected', 'busy', 'failed', 'cancelled',
                            'unreachable', 'notAContact', 'missed', 'interrupted')),
                        postsTried TEXT NOT NULL DEFAULT '[]'
                            CHECK (json_valid(postsTried) AND json_type(postsTried) = 'array'),
                        failureReason TEXT,
                        uploadState TEXT NOT NULL DEFAULT 'notReady'
                            CHECK (uploadState IN ('notReady', 'pending', 'uploaded')),
                        -- an ended call has an outcome and vice versa
                        CHECK ((endedAt IS NULL) = (outcome IS NULL))
                    );
                    CREATE INDEX callRecord_startedAt ON callRecord(startedAt);

                    CREATE TABLE setting (
                        key TEXT NOT NULL PRIMARY KEY CHECK (length(key) > 0),
                        value TEXT NOT NULL
                    );

                    CREATE TABLE callbackRequest (
                        id TEXT NOT NULL PRIMARY KEY CHECK (length(id) > 0),
                        createdAt DATETIME NOT NULL,
                        reason TEXT NOT NULL,
                        callID TEXT REFERENCES callRecord(id) ON DELETE SET NULL,
                        delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1))
                    );
                    CREATE INDEX callbackRequest_callID ON callbackRequest(callID);

                    CREATE TABLE outbox (
                        id TEXT NOT NULL PRIMARY KEY CHECK (length(id) > 0),
                        kind TEXT NOT NULL CHECK (kind IN ('callRecord', 'callbackRequest')),
                        payload TEXT NOT NULL CHECK (json_valid(payload)),
                        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                        nextAttemptAt DATETIME NOT NULL,
                        createdAt DATETIME NOT NULL
                    );
                    CREATE INDEX outbox_nextAttemptAt ON outbox(nextAttemptAt);
                    """)
        }
        // Issue 15 (liveness) and 19 (call log truth): the outcome 'connectionLost' (the other
        // side went silent mid-call), and `lastAliveAt`, the heartbeat written every few
        // seconds while a call is open, which becomes `endedAt` of a call a power cut
        // interrupted. SQLite cannot change a CHECK in place, so the table is rebuilt (the
        // documented 12-step way: GRDB runs a migration with foreign keys off and checks them
        // before the commit; `callbackRequest.callID` refers to the table by name and finds
        // the new one).
        migrator.registerMigration("v2-liveness") { db in
            try db.execute(
                sql: """
                    CREATE TABLE callRecord_v2 (
                        id TEXT NOT NULL PRIMARY KEY CHECK (length(id) > 0),
                        direction TEXT NOT NULL CHECK (direction IN ('outgoing', 'incoming')),
                        peerURI TEXT NOT NULL,
                        peerName TEXT,
                        startedAt DATETIME NOT NULL,
                        answeredAt DATETIME,
                        endedAt DATETIME,
                        outcome TEXT CHECK (outcome IS NULL OR outcome IN (
                            'answered', 'unanswered', 'rejected', 'busy', 'failed', 'cancelled',
                            'unreachable', 'notAContact', 'missed', 'interrupted', 'connectionLost')),
                        postsTried TEXT NOT NULL DEFAULT '[]'
                            CHECK (json_valid(postsTried) AND json_type(postsTried) = 'array'),
                        failureReason TEXT,
                        uploadState TEXT NOT NULL DEFAULT 'notReady'
                            CHECK (uploadState IN ('notReady', 'pending', 'uploaded')),
                        -- the last heartbeat of a call in progress (every few seconds)
                        lastAliveAt DATETIME,
                        CHECK ((endedAt IS NULL) = (outcome IS NULL))
                    );
                    INSERT INTO callRecord_v2 (id, direction, peerURI, peerName, startedAt, answeredAt,
                            endedAt, outcome, postsTried, failureReason, uploadState)
                        SELECT id, direction, peerURI, peerName, startedAt, answeredAt,
                            endedAt, outcome, postsTried, failureReason, uploadState
                        FROM callRecord;
                    DROP TABLE callRecord;
                    ALTER TABLE callRecord_v2 RENAME TO callRecord;
                    CREATE INDEX callRecord_startedAt ON callRecord(startedAt);
                    """)
        }
        // Issue 19 (a callback promise that is true): where each callback request stands in
        // its delivery to the centrale over SIP (pending until a 2xx to its MESSAGE, then
        // acknowledged; cleared once the centrale called or was reached), what the MESSAGE
        // carries (the press, the posts tried), and the call that was the callback
        // (`callRecord.callbackRequestID`). Requests from before this migration were promised
        // under the old rule and delivered to the organisation's server only; they are marked
        // cleared so an update does not send stale requests to the centrale.
        migrator.registerMigration("v3-callback-delivery") { db in
            try db.execute(
                sql: """
                    ALTER TABLE callbackRequest ADD COLUMN pressedAt DATETIME;
                    ALTER TABLE callbackRequest ADD COLUMN postsTried TEXT NOT NULL DEFAULT '[]'
                        CHECK (json_valid(postsTried) AND json_type(postsTried) = 'array');
                    ALTER TABLE callbackRequest ADD COLUMN deliveryState TEXT NOT NULL DEFAULT 'pending'
                        CHECK (deliveryState IN ('pending', 'acknowledged', 'cleared'));
                    ALTER TABLE callbackRequest ADD COLUMN acknowledgedAt DATETIME;
                    ALTER TABLE callbackRequest ADD COLUMN acknowledgedBy TEXT
                        CHECK (acknowledgedBy IS NULL OR acknowledgedBy IN ('primary', 'fallback'));
                    ALTER TABLE callbackRequest ADD COLUMN escalatedAt DATETIME;
                    ALTER TABLE callbackRequest ADD COLUMN clearedAt DATETIME;
                    UPDATE callbackRequest SET deliveryState = 'cleared', clearedAt = createdAt;
                    ALTER TABLE callRecord ADD COLUMN callbackRequestID TEXT
                        REFERENCES callbackRequest(id) ON DELETE SET NULL;
                    CREATE INDEX callbackRequest_deliveryState ON callbackRequest(deliveryState);
                    """)
        }
        return migrator
    }
}
