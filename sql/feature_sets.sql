-- The ordered feature names of each feature source: position i of a profile's `features`
-- vector is feature_names[i]. Grain: feature_source.
with
external as (select * from external_profiles),
external_features as (
    select distinct feature_source, feature_index, feature
    from external
),
external_sets as (
    select feature_source, list(feature order by feature_index) as feature_names
    from external_features
    group by feature_source
),
all_sets as (
    select * from external_sets
)
select feature_source, len(feature_names)::integer as n_features, feature_names
from all_sets
order by feature_source
