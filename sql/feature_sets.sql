-- The ordered feature names of each feature source: position i of a profile's `features`
-- vector is feature_names[i]. Grain: feature_source.
with
external as (select * from external_profiles),
cells as (select * from cell_features),
external_features as (
    select distinct feature_source, feature_index, feature
    from external
),
external_sets as (
    select feature_source, list(feature order by feature_index) as feature_names
    from external_features
    group by feature_source
),
handcrafted_columns as (
    -- alias() gives each matched column's name, in the order well_profiles packs them
    select alias(columns('^(Nuclei|Cells|Cytoplasm)_'))
    from cells
    limit 1
),
handcrafted_set as (
    select
        'handcrafted' as feature_source,
        [*columns('^(Nuclei|Cells|Cytoplasm)_')] as feature_names
    from handcrafted_columns
),
all_sets as (
    select * from external_sets
    union all
    select * from handcrafted_set
)
select feature_source, len(feature_names)::integer as n_features, feature_names
from all_sets
order by feature_source
