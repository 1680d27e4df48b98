"""The ActiveSync WBXML code pages 0-25 ([MS-ASWBXML] §2.1.2.1.1-§2.1.2.1.26), as data.

Each page is its name (also the XML namespace of its tags, see docs/activesync.md) and its tag
names in token order from 0x05 (WBXML 1.3 §5.8.2: tokens 0x00-0x04 are global); ``-`` marks a
token the page does not define.  Tags of old protocol versions (2.x, 12.x) stay in, also the
few the current tables no longer list (AirSync's Version, RTFTruncation, NotifyGUID, the old
FolderHierarchy tags; named as libwbxml names them): a token we do not name would be dropped by
the decoder with its subtree.

Invariants (checked by the tests): at most 59 tokens a page (0x05-0x3F, the six low bits of a
tag token), no name twice on one page.
"""

from __future__ import annotations

from typing import Dict, Tuple

#: (page name, tags from token 0x05 on)
_PAGES: Tuple[Tuple[str, str], ...] = (
    ("AirSync", """
        Sync Responses Add Change Delete Fetch SyncKey ClientId ServerId Status Collection Class
        Version CollectionId GetChanges MoreAvailable WindowSize Commands Options FilterType
        Truncation RTFTruncation Conflict Collections ApplicationData DeletesAsMoves NotifyGUID
        Supported SoftDelete MIMESupport
        MIMETruncation Wait Limit Partial ConversationMode MaxItems HeartbeatInterval"""),
    ("Contacts", """
        Anniversary AssistantName AssistantPhoneNumber Birthday Body BodySize BodyTruncated
        Business2PhoneNumber BusinessAddressCity BusinessAddressCountry BusinessAddressPostalCode
        BusinessAddressState BusinessAddressStreet BusinessFaxNumber BusinessPhoneNumber
        CarPhoneNumber Categories Category Children Child CompanyName Department Email1Address
        Email2Address Email3Address FileAs FirstName Home2PhoneNumber HomeAddressCity
        HomeAddressCountry HomeAddressPostalCode HomeAddressState HomeAddressStreet HomeFaxNumber
        HomePhoneNumber JobTitle LastName MiddleName MobilePhoneNumber OfficeLocation
        OtherAddressCity OtherAddressCountry OtherAddressPostalCode OtherAddressState
        OtherAddressStreet PagerNumber RadioPhoneNumber Spouse Suffix Title WebPage
        YomiCompanyName YomiFirstName YomiLastName CompressedRTF Picture Alias WeightedRank"""),
    ("Email", """
        Attachment Attachments AttName AttSize Att0Id AttMethod AttRemoved Body BodySize
        BodyTruncated DateReceived DisplayName DisplayTo Importance MessageClass Subject Read To
        Cc From ReplyTo AllDayEvent Categories Category DtStamp EndTime InstanceType BusyStatus
        Location MeetingRequest Organizer RecurrenceId Reminder ResponseRequested Recurrences
        Recurrence Type Until Occurrences Interval DayOfWeek DayOfMonth WeekOfMonth MonthOfYear
        StartTime Sensitivity TimeZone GlobalObjId ThreadTopic MIMEData MIMETruncated MIMESize
        InternetCPID Flag Status ContentClass FlagType CompleteTime DisallowNewTimeProposal"""),
    ("AirNotify", """
        Notify Notification Version LifeTime DeviceInfo Enable Folder ServerId DeviceAddress
        ValidCarrierProfiles CarrierProfile Status Responses Devices Device Id Expiry NotifyGUID
        DeviceFriendlyName"""),
    ("Calendar", """
        Timezone AllDayEvent Attendees Attendee Email Name Body BodyTruncated BusyStatus
        Categories Category CompressedRTF DtStamp EndTime Exception Exceptions Deleted
        ExceptionStartTime Location MeetingStatus OrganizerEmail OrganizerName Recurrence Type
        Until Occurrences Interval DayOfWeek DayOfMonth WeekOfMonth MonthOfYear Reminder
        Sensitivity Subject StartTime UID AttendeeStatus AttendeeType - - - - - - - -
        DisallowNewTimeProposal ResponseRequested AppointmentReplyTime ResponseType CalendarType
        IsLeapMonth FirstDayOfWeek OnlineMeetingConfLink OnlineMeetingExternalLink ClientUid"""),
    ("Move", "MoveItems Move SrcMsgId SrcFldId DstFldId Response Status DstMsgId"),
    ("GetItemEstimate", """
        GetItemEstimate Version Collections Collection Class CollectionId DateTime Estimate
        Response Status"""),
    ("FolderHierarchy", """
        Folders Folder DisplayName ServerId ParentId Type Response Status ContentClass Changes Add
        Delete Update SyncKey FolderCreate FolderDelete FolderUpdate FolderSync Count Version"""),
    ("MeetingResponse", """
        CalendarId CollectionId MeetingResponse RequestId Request Result Status UserResponse
        Version InstanceId - ProposedStartTime ProposedEndTime SendResponse"""),
    ("Tasks", """
        Body BodySize BodyTruncated Categories Category Complete DateCompleted DueDate UtcDueDate
        Importance Recurrence Type Start Until Occurrences Interval DayOfMonth DayOfWeek
        WeekOfMonth MonthOfYear Regenerate DeadOccur ReminderSet ReminderTime Sensitivity
        StartDate UtcStartDate Subject CompressedRTF OrdinalDate SubOrdinalDate CalendarType
        IsLeapMonth FirstDayOfWeek"""),
    ("ResolveRecipients", """
        ResolveRecipients Response Status Type Recipient DisplayName EmailAddress Certificates
        Certificate MiniCertificate Options To CertificateRetrieval RecipientCount
        MaxCertificates MaxAmbiguousRecipients CertificateCount Availability StartTime EndTime
        MergedFreeBusy Picture MaxSize Data MaxPictures"""),
    ("ValidateCert", "ValidateCert Certificates Certificate CertificateChain CheckCRL Status"),
    ("Contacts2", """
        CustomerId GovernmentId IMAddress IMAddress2 IMAddress3 ManagerName CompanyMainPhone
        AccountName NickName MMS"""),
    ("Ping", "Ping AutdState Status HeartbeatInterval Folders Folder Id Class MaxFolders"),
    ("Provision", """
        Provision Policies Policy PolicyType PolicyKey Data Status RemoteWipe EASProvisionDoc
        DevicePasswordEnabled AlphanumericDevicePasswordRequired RequireStorageCardEncryption
        PasswordRecoveryEnabled DocumentBrowseEnabled AttachmentsEnabled MinDevicePasswordLength
        MaxInactivityTimeDeviceLock MaxDevicePasswordFailedAttempts MaxAttachmentSize
        AllowSimpleDevicePassword DevicePasswordExpiration DevicePasswordHistory AllowStorageCard
        AllowCamera RequireDeviceEncryption AllowUnsignedApplications
        AllowUnsignedInstallationPackages MinDevicePasswordComplexCharacters AllowWiFi
        AllowTextMessaging AllowPOPIMAPEmail AllowBluetooth AllowIrDA RequireManualSyncWhenRoaming
        AllowDesktopSync MaxCalendarAgeFilter AllowHTMLEmail MaxEmailAgeFilter
        MaxEmailBodyTruncationSize MaxEmailHTMLBodyTruncationSize RequireSignedSMIMEMessages
        RequireEncryptedSMIMEMessages RequireSignedSMIMEAlgorithm RequireEncryptionSMIMEAlgorithm
        AllowSMIMEEncryptionAlgorithmNegotiation AllowSMIMESoftCerts AllowBrowser
        AllowConsumerEmail AllowRemoteDesktop AllowInternetSharing UnapprovedInROMApplicationList
        ApplicationName ApprovedApplicationList Hash AccountOnlyRemoteWipe"""),
    ("Search", """
        Search - Store Name Query Options Range Status Response Result Properties Total EqualTo
        Value And Or FreeText - DeepTraversal LongId RebuildResults LessThan GreaterThan Schema
        Supported UserName Password ConversationId Picture MaxSize MaxPictures"""),
    ("Gal", """
        DisplayName Phone Office Title Company Alias FirstName LastName HomePhone MobilePhone
        EmailAddress Picture Status Data"""),
    ("AirSyncBase", """
        BodyPreference Type TruncationSize AllOrNone - Body Data EstimatedDataSize Truncated
        Attachments Attachment DisplayName FileReference Method ContentId ContentLocation IsInline
        NativeBodyType ContentType Preview BodyPartPreference BodyPart Status Add Delete ClientId
        Content Location Annotation Street City State Country PostalCode Latitude Longitude
        Accuracy Altitude AltitudeAccuracy LocationUri InstanceId"""),
    ("Settings", """
        Settings Status Get Set Oof OofState StartTime EndTime OofMessage AppliesToInternal
        AppliesToExternalKnown AppliesToExternalUnknown Enabled ReplyMessage BodyType
        DevicePassword Password DeviceInformation Model IMEI FriendlyName OS OSLanguage
        PhoneNumber UserInformation EmailAddresses SMTPAddress UserAgent EnableOutboundSMS
        MobileOperator PrimarySmtpAddress Accounts Account AccountId AccountName UserDisplayName
        SendDisabled - RightsManagementInformation"""),
    ("DocumentLibrary", """
        LinkId DisplayName IsFolder CreationDate LastModifiedDate IsHidden ContentLength
        ContentType"""),
    ("ItemOperations", """
        ItemOperations Fetch Store Options Range Total Properties Data Status Response Version
        Schema Part EmptyFolderContents DeleteSubFolders UserName Password Move DstFldId
        ConversationId MoveAlways"""),
    ("ComposeMail", """
        SendMail SmartForward SmartReply SaveInSentItems ReplaceMime - Source FolderId ItemId
        LongId InstanceId Mime ClientId Status AccountId - Forwardees Forwardee Name Email"""),
    ("Email2", """
        UmCallerID UmUserNotes UmAttDuration UmAttOrder ConversationId ConversationIndex
        LastVerbExecuted LastVerbExecutionTime ReceivedAsBcc Sender CalendarType IsLeapMonth
        AccountId FirstDayOfWeek MeetingMessageType - IsDraft Bcc Send"""),
    ("Notes", "Subject MessageClass LastModifiedDate Categories Category"),
    ("RightsManagement", """
        RightsManagementSupport RightsManagementTemplates RightsManagementTemplate
        RightsManagementLicense EditAllowed ReplyAllowed ReplyAllAllowed ForwardAllowed
        ModifyRecipientsAllowed ExtractAllowed PrintAllowed ExportAllowed
        ProgrammaticAccessAllowed Owner ContentExpiryDate TemplateID TemplateName
        TemplateDescription ContentOwner RemoveRightsManagementProtection"""),
    ("Find", """
        Find SearchId ExecuteSearch MailBoxSearchCriterion Query Status FreeText Options Range
        DeepTraversal - - Response Result Properties Preview HasAttachments Total DisplayCc
        DisplayBcc GalSearchCriterion - - - - - - MaxPictures MaxSize Picture"""),
)

#: names an encoder also takes for a token (older spellings of the same tag)
_ALIASES: Dict[Tuple[str, str], str] = {
    ("Provision", "DeviceEncryptionEnabled"): "RequireStorageCardEncryption",  # 12.0's name of 0x10
    ("Settings", "SmtpAddress"): "SMTPAddress",  # as libwbxml and Z-Push spell it
    ("Email", "FlagStatus"): "Status",  # the Status of a Flag, as libwbxml and Z-Push name 0x3B
}

#: page number -> namespace (the page's name)
NAMESPACES: Tuple[str, ...] = tuple(name for name, _ in _PAGES)
#: page number -> {token: "{namespace}Tag"}, for the decoder
TAGS: Tuple[Dict[int, str], ...] = tuple(
    {token: "{%s}%s" % (ns, tag) for token, tag in enumerate(names.split(), 0x05) if tag != "-"}
    for ns, names in _PAGES)
#: "{namespace}Tag" -> (page, token), for the encoder
TOKENS: Dict[str, Tuple[int, int]] = {
    qname: (page, token) for page, tags in enumerate(TAGS) for token, qname in tags.items()}
for (_ns, _alias), _tag in _ALIASES.items():
    TOKENS["{%s}%s" % (_ns, _alias)] = TOKENS["{%s}%s" % (_ns, _tag)]
