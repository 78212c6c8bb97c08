-- Well profiles of every feature source: the features of one well as one FLOAT[] vector
-- (mean over its cells; external sources arrive already aggregated per well).
-- Grain: (feature_source, plate, well). Position i of `features` is named in feature_sets.
with
external as (select * from external_profiles),
annotations as (select * from moa),
external_wells as (
    select
        feature_source, plate, well, batch, compound, concentration,
        null::bigint as n_cells,
        list(value::float order by feature_index) as features
    from external
    group by feature_source, plate, well, batch, compound, concentration
),
all_wells as (
    select * from external_wells
),
annotated as (
    select
        w.feature_source, w.plate, w.well, w.batch, w.compound, w.concentration,
        a.moa, w.n_cells, w.features
    from all_wells as w
    left join annotations as a using (compound, concentration)
)
select * from annotated
order by feature_source, plate, well
