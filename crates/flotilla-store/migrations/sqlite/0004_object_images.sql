-- The container images each object runs (an Application's components), so that the registry
-- tells which applications use a version without reading every application.
CREATE TABLE object_images (
    object_id BIGINT NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    image TEXT NOT NULL,
    PRIMARY KEY (object_id, image)
);
CREATE INDEX object_images_by_image ON object_images (image);

INSERT OR IGNORE INTO object_images (object_id, image)
SELECT o.id, json_extract(c.value, '$.image')
FROM objects o, json_each(o.spec, '$.components') c
WHERE o.kind = 'Application' AND json_extract(c.value, '$.image') IS NOT NULL;
