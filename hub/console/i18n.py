"""English and Spanish for the console: the English text is the key, Spanish is looked up.

Why a dict and not gettext .po files: the catalogue is small, lives next to the
templates, needs no compile step, and a test checks that every string the templates
and views pass through `_()` has a Spanish entry. Vocabulary labels (countries,
services, categories) come from protocol.vocab, which already carries en/es labels.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol import vocab

__all__ = ["EN", "ES", "LANGUAGES", "country_name", "negotiate", "translator", "vocab_label"]

LANGUAGES = ("en", "es")

ES: dict[str, str] = {
    # layout and navigation
    "Coordinator console": "Consola de coordinación",
    "Regional Safe Spaces Network": "Red Regional de Espacios Seguros",
    "Overview": "Resumen",
    "Referrals": "Referencias",
    "Flows": "Flujos",
    "Nodes": "Nodos",
    "Directory": "Directorio",
    "Service map": "Mapa de servicios",
    "Users": "Usuarios",
    "Sign in": "Iniciar sesión",
    "Sign out": "Cerrar sesión",
    "Email": "Correo electrónico",
    "Password": "Contraseña",
    "Language": "Idioma",
    "Save": "Guardar",
    "Filter": "Filtrar",
    "Reset": "Restablecer",
    "Export": "Exportar",
    "All": "Todos",
    "Any": "Cualquiera",
    "none": "ninguno",
    "Signed in as": "Sesión iniciada como",
    "Role": "Rol",
    "regional": "regional",
    "country": "país",
    "auditor": "auditoría",
    "Regional coordinator": "Coordinación regional",
    "Country focal point": "Punto focal de país",
    "Auditor (read only)": "Auditoría (solo lectura)",
    "Sign in with your organisation": "Iniciar sesión con su organización",
    "Wrong email or password, or the account is locked.":
        "Correo o contraseña incorrectos, o la cuenta está bloqueada.",
    "Your session has expired. Please sign in again.":
        "Su sesión ha expirado. Inicie sesión de nuevo.",
    "The form has expired. Please try again.": "El formulario expiró. Inténtelo de nuevo.",
    "This console shows content-free metadata only: no case information ever reaches the hub.":
        "Esta consola muestra solo metadatos sin contenido: ninguna información de casos llega al hub.",
    "You are not allowed to see this page.": "No tiene permiso para ver esta página.",
    "Not found": "No encontrado",
    "Forbidden": "Prohibido",
    "Back to the overview": "Volver al resumen",
    # overview
    "Referrals by status": "Referencias por estado",
    "From sent to completed": "De enviada a completada",
    "Overdue referrals by priority": "Referencias vencidas por prioridad",
    "Median times": "Tiempos medianos",
    "Median time to receipt": "Tiempo mediano hasta la recepción",
    "Median time to acceptance": "Tiempo mediano hasta la aceptación",
    "Median time to completion": "Tiempo mediano hasta la finalización",
    "Referrals sent per week": "Referencias enviadas por semana",
    "Members not answering": "Miembros que no responden",
    "Period": "Período",
    "last 30 days": "últimos 30 días",
    "last 90 days": "últimos 90 días",
    "last 365 days": "últimos 365 días",
    "Total referrals": "Total de referencias",
    "Overdue": "Vencidas",
    "No data yet.": "Aún no hay datos.",
    "Deadlines": "Plazos",
    "urgent 24 h, high 72 h, normal 2 weeks": "urgente 24 h, alta 72 h, normal 2 semanas",
    "hours": "horas",
    "days": "días",
    "sent": "enviadas",
    "sent (week)": "enviadas (semana)",
    "completed (week)": "completadas (semana)",
    "Organisation": "Organización",
    "Received": "Recibidas",
    "Unanswered overdue": "Vencidas sin respuesta",
    "Answered": "Respondidas",
    "Median response": "Respuesta mediana",
    "Scope": "Alcance",
    "whole network": "toda la red",
    # referrals
    "Referral": "Referencia",
    "Referral id": "Id de referencia",
    "From": "De",
    "To": "Para",
    "From country": "País de origen",
    "To country": "País de destino",
    "Country": "País",
    "Priority": "Prioridad",
    "Category": "Categoría",
    "Status": "Estado",
    "Age": "Antigüedad",
    "Deadline": "Plazo",
    "Due": "Vence",
    "Sent": "Enviada",
    "Timeline": "Cronología",
    "Message": "Mensaje",
    "Kind": "Tipo",
    "Submitted to the hub": "Entregado al hub",
    "Delivered to the recipient's node": "Entregado al nodo destinatario",
    "Expired undelivered": "Expiró sin entregarse",
    "Size": "Tamaño",
    "Only content-free metadata is shown.": "Solo se muestran metadatos sin contenido.",
    "No referrals match.": "Ninguna referencia coincide.",
    "Showing": "Mostrando",
    "of": "de",
    "Deadline state": "Estado del plazo",
    "Time to receipt": "Tiempo hasta la recepción",
    "Time to acceptance": "Tiempo hasta la aceptación",
    "Time to completion": "Tiempo hasta la finalización",
    "Organisation (node)": "Organización (nodo)",
    # priorities, statuses, deadline states, kinds
    "urgent": "urgente",
    "high": "alta",
    "normal": "normal",
    "requested": "solicitada",
    "received": "recibida",
    "accepted": "aceptada",
    "declined": "rechazada",
    "in_progress": "en curso",
    "completed": "completada",
    "cancelled": "cancelada",
    "failed": "fallida",
    "on_track": "a tiempo",
    "due_soon": "vence pronto",
    "overdue": "vencida",
    "met": "cumplido",
    "late": "tardía",
    "closed": "cerrada",
    "referral": "referencia",
    "status": "estado",
    "receipt": "acuse de recibo",
    "consent_withdrawn": "consentimiento retirado",
    "problem": "problema",
    # flows
    "Country to country": "De país a país",
    "Map of referral flows": "Mapa de flujos de referencias",
    "rows: sending country, columns: receiving country":
        "filas: país que envía, columnas: país que recibe",
    "Total": "Total",
    # nodes
    "Node": "Nodo",
    "Health": "Salud",
    "Last seen": "Visto por última vez",
    "Mailbox depth": "Mensajes en buzón",
    "Oldest undelivered": "Más antiguo sin entregar",
    "Key expiry": "Vencimiento de clave",
    "Software version": "Versión del software",
    "Revoked nodes": "Nodos revocados",
    "Revoked": "Revocado",
    "ok": "bien",
    "down": "caído",
    "never": "nunca",
    "active": "activo",
    "revoked": "revocado",
    "expiring": "por vencer",
    "expired": "vencida",
    "No revoked nodes.": "No hay nodos revocados.",
    "Enrolled": "Inscrito",
    # directory
    "Organisations and services": "Organizaciones y servicios",
    "Service type": "Tipo de servicio",
    "Population": "Población",
    "Populations served": "Poblaciones atendidas",
    "Languages": "Idiomas",
    "Location": "Ubicación",
    "Hours": "Horario",
    "Contact": "Contacto",
    "Referral criteria": "Criterios de referencia",
    "Services": "Servicios",
    "No services published yet.": "Aún no se han publicado servicios.",
    "Import HSDS JSON": "Importar JSON HSDS",
    "Export HSDS JSON": "Exportar JSON HSDS",
    "Import": "Importar",
    "File": "Archivo",
    "Imported.": "Importado.",
    "The file is not valid HSDS 3.0:": "El archivo no es HSDS 3.0 válido:",
    "Published by": "Publicado por",
    "The map works offline: boundaries are Natural Earth data shipped with the hub.":
        "El mapa funciona sin conexión: los límites son datos de Natural Earth incluidos en el hub.",
    "services shown": "servicios mostrados",
    # users
    "Coordinator accounts": "Cuentas de coordinación",
    "Last sign-in": "Último inicio de sesión",
    "Disabled": "Desactivada",
    "yes": "sí",
    "no": "no",
    # exports
    "CSV": "CSV",
    "XLSX": "XLSX",
    "Cells below": "Las celdas menores que",
    "are suppressed in aggregate exports.": "se suprimen en las exportaciones agregadas.",
}

# Populations served (directory profile vocabulary; see hub.console.hsds.POPULATIONS).
ES.update(
    {
        "Women and girls": "Mujeres y niñas",
        "Children": "Niñas, niños",
        "Unaccompanied or separated children": "Niñez no acompañada o separada",
        "Adolescents and youth": "Adolescentes y jóvenes",
        "LGBTIQ+ persons": "Personas LGBTIQ+",
        "Survivors of SGBV": "Sobrevivientes de VSBG",
        "Victims of trafficking": "Víctimas de trata",
        "Refugees and asylum seekers": "Personas refugiadas y solicitantes de asilo",
        "Migrants in transit": "Personas migrantes en tránsito",
        "Returnees": "Personas retornadas",
        "Internally displaced persons": "Personas desplazadas internas",
        "Persons with disabilities": "Personas con discapacidad",
        "Older persons": "Personas mayores",
        "Indigenous peoples": "Pueblos indígenas",
        "Everyone": "Todas las personas",
    }
)

_CATEGORY_ES = {
    "sgbv": "VSBG",
    "child_protection": "protección de la niñez",
    "trafficking": "trata de personas",
    "lgbti": "LGBTI",
    "health": "salud",
    "legal": "legal",
    "basic_needs": "necesidades básicas",
    "other": "otra",
}
_CATEGORY_EN = {
    "sgbv": "SGBV",
    "child_protection": "child protection",
    "trafficking": "trafficking",
    "lgbti": "LGBTI",
    "health": "health",
    "legal": "legal",
    "basic_needs": "basic needs",
    "other": "other",
}


#: English display forms of code-like keys (statuses, deadline states, kinds).
EN: dict[str, str] = {
    "in_progress": "in progress",
    "on_track": "on track",
    "due_soon": "due soon",
    "consent_withdrawn": "consent withdrawn",
}


def translator(lang: str) -> Callable[[str], str]:
    if lang == "es":
        return lambda text: ES.get(text, text)
    return lambda text: EN.get(text, text)


def negotiate(accept_language: str | None) -> str:
    """The first of en/es named in an Accept-Language header (default en)."""
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(",")[:20]:
        bits = part.strip().split(";")
        tag = bits[0].strip().lower()[:2]
        q = 1.0
        for b in bits[1:]:
            b = b.strip()
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if tag in LANGUAGES and q > best_q:
            best, best_q = tag, q
    return best


def country_name(code: str | None, lang: str) -> str:
    if not code:
        return "?"
    entry = vocab.countries().get(code.upper())
    return entry.label(lang) if entry else code


def vocab_label(kind: str, code: str | None, lang: str) -> str:
    """Label of a category or service-type code in `lang` (the code itself when unknown)."""
    if code is None:
        return "-"
    if kind == "category":
        table = _CATEGORY_ES if lang == "es" else _CATEGORY_EN
        return table.get(code, code)
    if kind == "service":
        entry = vocab.services().get(code)
        return entry.label(lang) if entry else code
    if kind == "language":
        entry = vocab.languages().get(code)
        return entry.label(lang) if entry else code
    return code
