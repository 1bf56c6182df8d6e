-- The schema novaconsole wrote as version 1 (metadata.create_all, postgresql),
-- kept to test upgrades from it. Generated from the models of that version.

CREATE TABLE novaconsole_controls (
	scope VARCHAR(20) NOT NULL,
	name VARCHAR(200) NOT NULL,
	paused BOOLEAN,
	concurrency INTEGER,
	batch_size INTEGER,
	PRIMARY KEY (scope, name)
);

CREATE TABLE novaconsole_item_states (
	handler VARCHAR(200) NOT NULL,
	item_id VARCHAR(500) NOT NULL,
	attempts INTEGER NOT NULL,
	dead BOOLEAN NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (handler, item_id)
);

CREATE TABLE novaconsole_meta (
	key VARCHAR(100) NOT NULL,
	value VARCHAR(200) NOT NULL,
	PRIMARY KEY (key)
);

CREATE TABLE novaconsole_results (
	id BIGSERIAL NOT NULL,
	handler VARCHAR(200) NOT NULL,
	item_id VARCHAR(500) NOT NULL,
	status VARCHAR(20) NOT NULL,
	attempts INTEGER NOT NULL,
	started_at TIMESTAMP WITH TIME ZONE NOT NULL,
	finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
	duration FLOAT NOT NULL,
	error TEXT,
	traceback TEXT,
	history JSON,
	PRIMARY KEY (id)
);

CREATE INDEX ix_novaconsole_results_handler_finished ON novaconsole_results (handler, finished_at);

CREATE INDEX ix_novaconsole_results_status ON novaconsole_results (status);

INSERT INTO novaconsole_meta (key, value) VALUES ('schema_version', '1');
