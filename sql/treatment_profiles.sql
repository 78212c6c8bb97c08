-- Treatment profiles: the element-wise median over a treatment's wells, DMSO dropped.
-- Grain: (feature_source, postprocessing, compound, concentration).
-- batch is the treatment's batch string: its wells' distinct Weeks, sorted, comma-joined.
with
wells as (select * from well_profiles_normalized),
treated as (
    select * from wells
    where compound <> 'DMSO'
),
well_values as (
    select
        feature_source, postprocessing, compound, concentration,
        unnest(features) as value,
        unnest(range(1, len(features) + 1)) as feature_index
    from treated
),
medians as (
    select
        feature_source, postprocessing, compound, concentration, feature_index,
        median(value) as value
    from well_values
    group by feature_source, postprocessing, compound, concentration, feature_index
),
packed as (
    select
        feature_source, postprocessing, compound, concentration,
        list(value::float order by feature_index) as features
    from medians
    group by feature_source, postprocessing, compound, concentration
),
treatments as (
    select
        feature_source, postprocessing, compound, concentration,
        any_value(moa) as moa,
        array_to_string(list_sort(list_distinct(list(batch))), ',') as batch,
        count(*) as n_wells
    from treated
    group by feature_source, postprocessing, compound, concentration
)
select
    t.feature_source, t.postprocessing, t.compound, t.concentration, t.moa, t.batch,
    t.n_wells, p.features
from treatments as t
join packed as p using (feature_source, postprocessing, compound, concentration)
order by feature_source, postprocessing, compound, concentration
