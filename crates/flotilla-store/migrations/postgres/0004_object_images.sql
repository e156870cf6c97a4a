-- The container images each object runs (an Application's components), so that the registry
-- tells which applications use a version without reading every application. Byte order
-- (COLLATE "C") lets prefix ranges use the index.
CREATE TABLE object_images (
    object_id BIGINT NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    image TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (object_id, image)
);
CREATE INDEX object_images_by_image ON object_images (image);

INSERT INTO object_images (object_id, image)
SELECT DISTINCT o.id, c ->> 'image'
FROM objects o, jsonb_array_elements(o.spec::jsonb -> 'components') c
WHERE o.kind = 'Application' AND c ->> 'image' IS NOT NULL
ON CONFLICT DO NOTHING;
