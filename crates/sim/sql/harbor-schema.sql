-- The part of Harbor's registry database that harbor-doctor reads and repairs,
-- with Harbor's real constraints, foreign keys and update_time triggers
-- (see shared/FACTS.md). Tests and the lab lay this into a fresh database.
-- crates/sim/tests/real_schema.rs fails when this drifts from what Harbor's
-- own migrations build, on these tables.

CREATE OR REPLACE FUNCTION update_update_time_at_column() RETURNS trigger AS $$
BEGIN
    NEW.update_time = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE harbor_user (
    user_id serial PRIMARY KEY NOT NULL,
    username varchar(255),
    email varchar(255),
    password varchar(40) NOT NULL,
    realname varchar(255) NOT NULL,
    comment varchar(30),
    deleted boolean DEFAULT false NOT NULL,
    reset_uuid varchar(40) DEFAULT NULL,
    salt varchar(40) DEFAULT NULL,
    sysadmin_flag boolean DEFAULT false NOT NULL,
    creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
    update_time timestamp DEFAULT CURRENT_TIMESTAMP,
    password_version varchar(16) DEFAULT 'sha256',
    CONSTRAINT harbor_user_username_key UNIQUE (username),
    CONSTRAINT harbor_user_email_key UNIQUE (email)
);
CREATE TRIGGER harbor_user_update_time_at_modtime BEFORE UPDATE ON harbor_user
    FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

INSERT INTO harbor_user (username, password, realname, comment, deleted, sysadmin_flag, salt)
VALUES ('admin', '', 'system admin', 'admin user', false, true, ''),
       ('anonymous', '', 'anonymous user', 'anonymous user', true, false, '');

CREATE TABLE oidc_user (
    id serial NOT NULL,
    user_id int NOT NULL,
    secret varchar(255) NOT NULL,
    subiss varchar(255) NOT NULL,
    token text,
    creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
    update_time timestamp DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    FOREIGN KEY (user_id) REFERENCES harbor_user(user_id),
    UNIQUE (subiss)
);
CREATE TRIGGER oidc_user_update_time_at_modtime BEFORE UPDATE ON oidc_user
    FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

CREATE TABLE project (
    project_id serial PRIMARY KEY NOT NULL,
    owner_id int NOT NULL,
    name varchar(255) NOT NULL,
    creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
    update_time timestamp DEFAULT CURRENT_TIMESTAMP,
    deleted boolean DEFAULT false NOT NULL,
    registry_id int,
    FOREIGN KEY (owner_id) REFERENCES harbor_user(user_id),
    UNIQUE (name)
);
CREATE TRIGGER project_update_time_at_modtime BEFORE UPDATE ON project
    FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

INSERT INTO project (owner_id, name) VALUES (1, 'library');

CREATE TABLE project_member (
    id serial NOT NULL,
    project_id int NOT NULL,
    entity_id int NOT NULL,
    entity_type char(1) NOT NULL,
    role int NOT NULL,
    creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
    update_time timestamp DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    CONSTRAINT unique_project_entity_type UNIQUE (project_id, entity_id, entity_type)
);
CREATE TRIGGER project_member_update_time_at_modtime BEFORE UPDATE ON project_member
    FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();

INSERT INTO project_member (project_id, entity_id, role, entity_type) VALUES (1, 1, 1, 'u');

CREATE TABLE properties (
    id serial NOT NULL,
    k varchar(64) NOT NULL,
    v text NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (k)
);

-- Groups: a project_member row with entity_type 'g' names a user_group id,
-- which can equal some user's user_id.
CREATE TABLE user_group (
    id serial NOT NULL,
    group_name varchar(255) NOT NULL,
    group_type smallint DEFAULT 0,
    ldap_group_dn varchar(512) NOT NULL,
    creation_time timestamp DEFAULT CURRENT_TIMESTAMP,
    update_time timestamp DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    CONSTRAINT unique_group_name UNIQUE (group_name)
);
CREATE TRIGGER user_group_update_time_at_modtime BEFORE UPDATE ON user_group
    FOR EACH ROW EXECUTE PROCEDURE update_update_time_at_column();
